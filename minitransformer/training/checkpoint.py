"""Checkpoints: a model (and, during training, its optimizer and random state) on disk.

A checkpoint is ONE ``.npz`` file: the arrays (``params.<name>``, and for training
``opt.m``/``opt.v``) plus one uint8 array ``__metadata__`` holding UTF-8 JSON (the
format and version, the model's config, the training state, a sha256 of every
array, and the fingerprint of the tokenizer the model was trained with). It is
written to a temporary file, flushed to disk, and renamed over the old one, so a
kill at any instant leaves either the previous checkpoint or the new one, whole.
Loading never executes code (``allow_pickle=False``) and checks everything it
reads; whatever is wrong is one ``ValueError`` that names the file and the fault.

    >>> import tempfile, pathlib
    >>> from minitransformer.model import GPT
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.npz"
    >>> _ = save_model(path, GPT("toy", seed=0))
    >>> load_model(path).config.d_model
    32
    >>> _ = path.write_bytes(b"")
    >>> load_model(path)
    Traceback (most recent call last):
    ValueError: .../m.npz is not a usable checkpoint: the file is empty (0 bytes), ...
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.config import ModelConfig
from ..core.fileio import atomic_write, remove_stale_temporaries
from ..core.tree import set_path
from ..core.values import is_int
from ..model import GPT

CHECKPOINT_FORMAT = "minitransformer-checkpoint"
CHECKPOINT_VERSION = 2  # 1: a .npz plus a separate .json (could be torn apart by a kill)
META_KEY = "__metadata__"
TRAINING_FIELDS = ("train_config", "state", "opt_t", "rng")  # what resuming needs beyond the model


def tokenizer_fingerprint(tok) -> str:
    """sha256 of the tokenizer's canonical JSON (pattern, merges, special tokens): its identity.

    Two tokenizers with the same fingerprint encode every text to the same ids.
    """
    canonical = {"pattern": tok.pattern, "merges": [list(m) for m in tok.merges],
                 "special_tokens": dict(tok.special_tokens)}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _arrays_sha256(arrays: dict) -> str:
    """One sha256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _write(path, arrays: dict, meta: dict) -> Path:
    """The one place a checkpoint is written: arrays + metadata in one file, atomically."""
    path = Path(path)
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **meta, "sha256": _arrays_sha256(arrays)}
    blob = np.frombuffer(json.dumps(meta, indent=1).encode("utf-8"), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **{META_KEY: blob}, **arrays)
    remove_stale_temporaries(path)  # left by a process killed while writing this file
    return atomic_write(path, buf.getvalue())


def save_checkpoint(path, trainer, extra: Optional[dict] = None) -> Path:
    """Write the whole training state to ``path`` (.npz): parameters, optimizer moments, step, random state.

    ``extra`` (JSON-able) defaults to ``trainer.run_info`` (what the command line records: preset, corpus).
    """
    arrays = {f"params.{n}": a for n, a in trainer.model.named_parameters().items()}
    arrays["opt.m"], arrays["opt.v"] = trainer.opt.m, trainer.opt.v
    meta = {
        "weights_only": False,
        "model_config": trainer.model.config.to_dict(),
        "tokenizer_sha256": getattr(trainer, "tokenizer_sha256", None),
        "train_config": asdict(trainer.config),
        "state": asdict(trainer.state),
        "opt_t": trainer.opt.t,
        "rng": {"batch": trainer.batch_rng.bit_generator.state, "dropout": trainer.dropout_rng.bit_generator.state},
        "extra": extra if extra is not None else getattr(trainer, "run_info", {}),
    }
    return _write(path, arrays, meta)


def save_model(path, model: GPT, extra: Optional[dict] = None, tokenizer=None) -> Path:
    """Write only the model (no optimizer state) to ``path`` (.npz). Load with `load_model`.

    A third of the size of a training checkpoint; used for the course model. ``tokenizer``
    (optional) records its fingerprint, so a mismatched tokenizer is refused later.
    """
    meta = {"weights_only": True, "model_config": model.config.to_dict(),
            "tokenizer_sha256": tokenizer_fingerprint(tokenizer) if tokenizer is not None else None,
            "extra": extra or {}}
    return _write(path, {f"params.{n}": a for n, a in model.named_parameters().items()}, meta)


def read_metadata(path) -> dict:
    """The metadata of a checkpoint or saved model (config, training state, ``extra``)."""
    return read_checkpoint(path)[0]


def load_model(path) -> GPT:
    """Load only the model from a checkpoint (for inference)."""
    meta, arrays = read_checkpoint(path)
    return model_from_checkpoint(meta, arrays, path)


def load_with_tokenizer(path, tokenizer=None) -> tuple:
    """``(model, tokenizer, metadata)`` of the checkpoint at ``path``, with the tokenizer read from the
    file ``tokenizer`` (a ``tokenizer.json``) and refused if it is not the one the model was trained
    with (`check_tokenizer`); without ``tokenizer`` the second is None."""
    from ..tokenizer import Tokenizer

    meta, arrays = read_checkpoint(path)
    tok = None
    if tokenizer is not None:
        tok = Tokenizer.load(tokenizer)
        check_tokenizer(meta, tok, path)
    return model_from_checkpoint(meta, arrays, path), tok, meta


# --------------------------------------------------------------------------- reading, with every check
def _bad(path, what: str) -> ValueError:
    return ValueError(f"{path} is not a usable checkpoint: {what}")


def _sniff(path: Path) -> bytes:
    """The file's bytes, after the checks that need no parsing (exists, file, size, magic number)."""
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}: the file is missing (train one with `minitransformer "
                         "train`, or check the path)")
    if path.is_dir():
        raise _bad(path, "it is a directory; give the .npz file inside it (e.g. model.npz)")
    raw = path.read_bytes()
    if not raw:
        raise _bad(path, "the file is empty (0 bytes), so its writing never finished; use an earlier "
                         "checkpoint or train again")
    if raw.startswith(b"\x93NUMPY"):
        raise _bad(path, "it is a single .npy array, not a .npz checkpoint (save with save_checkpoint/save_model)")
    if raw[:1] == b"\x80" or raw.startswith((b"(dp", b"(lp", b"cnumpy")):
        raise _bad(path, "it is a Python pickle; pickles can run code when loaded, so they are never read. "
                         "Checkpoints are .npz files written by save_checkpoint/save_model")
    if not raw.startswith(b"PK"):
        raise _bad(path, f"it is not a .npz (zip) file: it starts with {raw[:8]!r}")
    return raw


def _unzip(path: Path, raw: bytes) -> dict:
    """Every array in the archive, CRCs verified; any fault of the container becomes one ValueError."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            broken = zf.testzip()  # reads every member and checks its CRC-32
        if broken is not None:
            raise _bad(path, f"the member {broken!r} is damaged (its CRC-32 does not match: flipped bits?)")
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise _bad(path, "it holds pickled Python objects, which are never loaded (they could run code)") from None
        if str(exc).startswith(str(path)):
            raise
        raise _bad(path, f"the file is damaged (truncated or overwritten?): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - zipfile/numpy raise many kinds on garbage; name it, keep one kind
        raise _bad(path, f"the file is damaged (truncated or overwritten?): {type(exc).__name__}: {exc}") from None


def _parse_metadata(path: Path, arrays: dict) -> dict:
    if META_KEY not in arrays:
        legacy = path.with_suffix(path.suffix + ".json")
        if legacy.exists():
            raise _bad(path, f"it is a version-1 checkpoint (arrays here, metadata in {legacy.name}); convert it "
                             f"once with upgrade_checkpoint({str(path)!r}) from minitransformer.training.checkpoint")
        names = ", ".join(sorted(arrays)[:5]) or "none"
        raise _bad(path, f"it is a .npz without minitransformer metadata (arrays: {names}); it was not written "
                         "by save_checkpoint/save_model")
    blob = arrays.pop(META_KEY)
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise _bad(path, f"its {META_KEY} must be 1-D uint8 (UTF-8 JSON), got {blob.dtype} {blob.shape}")
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"its metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise _bad(path, f'its metadata does not say "format": {CHECKPOINT_FORMAT!r}')
    version = meta.get("version")
    if is_int(version) and version > CHECKPOINT_VERSION:
        raise _bad(path, f"it has checkpoint version {version}, written by a newer minitransformer; this one reads "
                         f"version {CHECKPOINT_VERSION}: upgrade minitransformer to load it")
    if version != CHECKPOINT_VERSION:
        raise _bad(path, f"it has checkpoint version {version!r}; this minitransformer reads version "
                         f"{CHECKPOINT_VERSION}")
    if not isinstance(meta.get("weights_only", False), bool):
        raise _bad(path, f"its metadata's weights_only={meta['weights_only']!r} must be true or false")
    required = ["model_config", "sha256", "weights_only"] + ([] if meta.get("weights_only") else list(TRAINING_FIELDS))
    missing = [k for k in required if k not in meta]
    if missing:
        raise _bad(path, f"its metadata is missing the field(s) {', '.join(missing)}")
    return meta


def read_checkpoint(path):
    """``(metadata, arrays)`` of a checkpoint, after checking that the parts are whole and belong together.

    Raises:
        ValueError: naming the file and what is wrong (missing, empty, truncated, flipped bits,
            another format, a pickle, missing fields, arrays that do not match their checksum).
    """
    path = Path(path)
    arrays = _unzip(path, _sniff(path))
    meta = _parse_metadata(path, arrays)
    if _arrays_sha256(arrays) != meta["sha256"]:
        raise _bad(path, "its arrays do not match the sha256 recorded in its metadata: the file is damaged, or "
                         "was put together from parts of different checkpoints")
    if not meta["weights_only"]:
        missing = [k for k in ("opt.m", "opt.v") if k not in arrays]
        if missing:
            raise _bad(path, f"it is a training checkpoint without the optimizer array(s) {', '.join(missing)}")
    return meta, arrays


def model_from_checkpoint(meta, arrays, path) -> GPT:
    """The `GPT` described by ``meta`` with the ``params.*`` arrays, each checked for name, shape and dtype."""
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (ValueError, TypeError) as exc:
        raise _bad(path, f"its model_config is invalid ({exc})") from None
    model = GPT(config, seed=0)
    expected = model.named_parameters()
    extra = sorted(set(arrays) - {f"params.{n}" for n in expected} - {"opt.m", "opt.v"})
    if extra:
        raise _bad(path, f"it has arrays its config does not know ({', '.join(extra[:3])}): from another model?")
    for name, arr in expected.items():
        key = f"params.{name}"
        if key not in arrays:
            raise _bad(path, f"it has no array {name!r}; its arrays do not match its config (another model?)")
        if arrays[key].shape != arr.shape or arrays[key].dtype not in (arr.dtype, np.float64):
            raise _bad(path, f"{name} has shape {arrays[key].shape} {arrays[key].dtype}, expected {arr.shape} "
                             f"{arr.dtype} by its config (another model?)")
        if arrays[key].dtype == arr.dtype:
            arr[...] = arrays[key]
        else:  # a float64 run (checking data parallelism against one process) stays float64
            set_path(model.params, name, arrays[key].copy())
    return model


def check_tokenizer(meta: dict, tok, path) -> None:
    """Refuse ``tok`` if the checkpoint at ``path`` records a different tokenizer (or vocabulary size)."""
    recorded = meta.get("tokenizer_sha256")
    if recorded is not None and recorded != tokenizer_fingerprint(tok):
        raise ValueError(f"the tokenizer is not the one {path} was trained with (sha256 {recorded[:12]}..., this "
                         f"one {tokenizer_fingerprint(tok)[:12]}...); use the tokenizer.json saved with it")
    vocab = meta["model_config"].get("vocab_size")
    if tok.vocab_size != vocab:
        raise ValueError(f"the tokenizer has {tok.vocab_size} ids but the model in {path} has {vocab}; use the "
                         "tokenizer.json saved with it")


def upgrade_checkpoint(path, tokenizer=None) -> Path:
    """Rewrite a version-1 checkpoint (``path`` + ``path.json``) as one version-2 file, in place.

    The old ``.json`` is removed once the new file is in place. ``tokenizer``, if given, is
    recorded by its fingerprint (version 1 did not record one).
    """
    path = Path(path)
    legacy = path.with_suffix(path.suffix + ".json")
    try:
        meta = json.loads(legacy.read_text(encoding="utf-8"))
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001
        raise _bad(path, f"it cannot be read as a version-1 checkpoint ({type(exc).__name__}: {exc})") from None
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != 1:
        raise _bad(legacy, "it is not a version-1 checkpoint's metadata")
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    meta.setdefault("weights_only", False)
    meta["tokenizer_sha256"] = tokenizer_fingerprint(tokenizer) if tokenizer is not None else None
    _write(path, arrays, meta)
    legacy.unlink()
    return path
