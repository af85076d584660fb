"""Checkpoints: a model (and, during training, its optimizer and random state) on disk.

Plain formats that load without executing code: ``.npz`` (read with
``allow_pickle=False``) for the arrays and JSON for the rest, each with a format
version. Writes are atomic.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.config import ModelConfig
from ..core.fileio import atomic_write
from ..core.tree import set_path
from ..model import GPT

CHECKPOINT_FORMAT = "minitransformer-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path, trainer, extra: Optional[dict] = None) -> Path:
    """Write ``path`` (.npz: parameters and optimizer moments) and ``path.json`` (config and state).

    Both writes are atomic; nothing is pickled.
    """
    path = Path(path)
    arrays = {f"params.{n}": a for n, a in trainer.model.named_parameters().items()}
    arrays["opt.m"], arrays["opt.v"] = trainer.opt.m, trainer.opt.v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model_config": trainer.model.config.to_dict(),
        "train_config": asdict(trainer.config),
        "state": asdict(trainer.state),
        "opt_t": trainer.opt.t,
        "rng": {"batch": trainer.batch_rng.bit_generator.state, "dropout": trainer.dropout_rng.bit_generator.state},
        "extra": extra or {},
    }
    atomic_write(path, buf.getvalue())
    atomic_write(_meta_path(path), json.dumps(meta, indent=1))
    return path


def save_model(path, model: GPT, extra: Optional[dict] = None) -> Path:
    """Write only the model (no optimizer state): ``path`` (.npz) and ``path.json``. Load with `load_model`.

    A third of the size of a training checkpoint; used for the course model in ``data/course``.
    """
    path = Path(path)
    buf = io.BytesIO()
    np.savez(buf, **{f"params.{n}": a for n, a in model.named_parameters().items()})
    meta = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "weights_only": True,
            "model_config": model.config.to_dict(), "extra": extra or {}}
    atomic_write(path, buf.getvalue())
    atomic_write(_meta_path(path), json.dumps(meta, indent=1))
    return path


def read_metadata(path) -> dict:
    """The JSON half of a checkpoint or saved model (config, training state, ``extra``)."""
    return read_checkpoint(path)[0]


def _meta_path(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".json")


def load_model(path) -> GPT:
    """Load only the model from a checkpoint (for inference)."""
    meta, arrays = read_checkpoint(path)
    return model_from_checkpoint(meta, arrays, path)


def read_checkpoint(path):
    path = Path(path)
    meta_path = _meta_path(path)
    for p in (path, meta_path):
        if not p.exists():
            raise ValueError(f"checkpoint file {p} is missing (a checkpoint is a .npz plus its .json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{meta_path} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path} is not a minitransformer checkpoint")
    if meta.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{meta_path} has checkpoint version {meta.get('version')!r}; this version reads "
                         f"{CHECKPOINT_VERSION}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npz checkpoint: {exc}") from None
    return meta, arrays


def model_from_checkpoint(meta, arrays, path) -> GPT:
    config = ModelConfig.from_dict(meta["model_config"])
    model = GPT(config, seed=0)
    expected = model.named_parameters()
    for name, arr in expected.items():
        key = f"params.{name}"
        if key not in arrays:
            raise ValueError(f"{path} has no array {name!r}; it does not match its config")
        if arrays[key].shape != arr.shape or arrays[key].dtype not in (arr.dtype, np.float64):
            raise ValueError(f"{path}: {name} has shape {arrays[key].shape} {arrays[key].dtype}, "
                             f"expected {arr.shape} {arr.dtype}")
        if arrays[key].dtype == arr.dtype:
            arr[...] = arrays[key]
        else:  # a float64 run (checking data parallelism against one process) stays float64
            set_path(model.params, name, arrays[key].copy())
    return model
