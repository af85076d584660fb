"""What the Hugging Face checkpoint formats share: a directory, a name table, and careful files.

A ``transformers`` checkpoint is a directory with ``config.json`` (the sizes and
options) and ``model.safetensors`` (the weights under ``transformers``' names).
Each format module (`llama_format`, `deepseek_format`) holds ONE table that
pairs every ``transformers`` tensor with our parameter and says how the values
move between the two; this module reads and writes the directory and applies a
table in either direction, checking every name and shape on the way in.

A table row is ``(hf_name, hf_shape, our_name, how)``:

- ``{i}`` in both names is the block index (the row repeats for every layer);
- ``hf_shape`` is a space-separated list of size letters, looked up in a dict of
  sizes the format computes from the config (``"HD C"`` -> ``(H·D, C)``);
- a row applies when the model has ``our_name`` (a model without biases simply
  has no ``b_Q``, an untied one has ``unembed.W_U``); no separate switches;
- ``how`` names a pair of functions in a dict of transforms: export (ours ->
  transformers) and import (transformers -> ours). The two common ones live here:
  ``"same"`` (the same array) and ``"T"`` (a transpose: we store a linear layer as
  (in, out) and compute ``x @ W``; PyTorch's ``nn.Linear`` stores (out, in)).

Writing (`write_dir`): the whole directory is built as a temporary sibling
(``.NAME.*.tmp``) and renamed into place, so the files of one export appear
together: a new directory appears whole or not at all. An existing one is
replaced as a unit: it is renamed aside (``.NAME.*.old``), the new one renamed
in, and the old one removed; if the second rename fails the old one is put back.
(A kill between the two renames leaves the old directory under its ``.old`` name.)
The new directory keeps copies of the old one's other files (hard links where the
filesystem allows), except the files of a ``transformers`` model that this export
does not rewrite (`MODEL_FILES`: ``generation_config.json``, sharded or pickled
weights, ...), which would describe the old model; the old tokenizer's files
(`TOKENIZER_FILES`) are kept unless a tokenizer is exported with the model.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.fileio import PathLike, atomic_write, current_umask
from ..core.values import is_number
from . import hf_tokenizer
from . import safetensors as safetensors_io

CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer.json"
# the files of a transformers model and of its tokenizer (glob patterns): what an export replaces
MODEL_FILES = (CONFIG, WEIGHTS, "generation_config.json", "model.safetensors.index.json", "model-*-of-*.safetensors",
               "pytorch_model*.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
TOKENIZER_FILES = (TOKENIZER, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "chat_template.jinja")
Transform = tuple[Callable, Callable]  # (export: ours -> transformers, import: transformers -> ours)
TRANSFORMS: dict[str, Transform] = {
    "same": (lambda a: a, lambda a: a),
    "T": (lambda a: a.T, lambda a: a.T),  # (in, out) <-> nn.Linear's (out, in)
}


def rows(table, sizes: dict, n_layers: int, present: set):
    """The table for one model: ``(hf_name, shape, our_name, how)``, ``{i}`` and sizes filled in.

    Only the rows whose ``our_name`` is in ``present`` (the model's flat parameter names).
    """
    for hf, shape, ours, how in table:
        dims = tuple(sizes[d] for d in shape.split())
        for i in (range(n_layers) if "{i}" in hf else [None]):
            if ours.format(i=i) in present:
                yield hf.format(i=i), dims, ours.format(i=i), how


# --------------------------------------------------------------------------- reading
def read_dir(path: PathLike, kind: str) -> tuple[dict, dict[str, np.ndarray], str, str]:
    """``(hf_config, tensors, config_path, weights_path)`` of a checkpoint directory, or a ValueError.

    ``kind`` names the format in messages ("a Llama checkpoint").
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory; pass the checkpoint directory holding {CONFIG} and {WEIGHTS}")
    config_path, weights_path = folder / CONFIG, folder / WEIGHTS
    if not config_path.exists():
        raise ValueError(f"no {CONFIG} in {folder}; {kind} directory has {CONFIG} and {WEIGHTS}")
    if not weights_path.exists():
        if any(folder.glob("model-*-of-*.safetensors")):
            hint = " It holds sharded weights (model-0000x-of-0000y.safetensors), which are not read here."
        elif (folder / "pytorch_model.bin").exists():
            hint = " It has a pickled pytorch_model.bin, which is never loaded here (unpickling runs code)."
        else:
            hint = ""
        raise ValueError(f"no {WEIGHTS} in {folder}.{hint} Write one file with transformers first: "
                         "from_pretrained(dir).save_pretrained(dir, max_shard_size='100GB').")
    hf_config = read_config(config_path)
    return hf_config, safetensors_io.load_file(weights_path), str(config_path), str(weights_path)


def read_config(config_path: Path) -> dict:
    """The JSON object in ``config_path`` (a ``config.json``), or a ValueError naming the file and the fault."""
    if config_path.is_dir():
        raise ValueError(f"{config_path} is a directory, not a file; {CONFIG} must be the model's JSON config")
    try:
        hf_config = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{config_path} is not valid JSON ({type(exc).__name__}: {exc}); write it again, e.g. "
                         "with transformers' save_pretrained") from None
    if not isinstance(hf_config, dict):
        raise ValueError(f"{config_path}: must hold a JSON object, got {type(hf_config).__name__}")
    return hf_config


def check_keys(hf_config: dict, required: tuple, source: str) -> None:
    """A ValueError naming the keys of ``required`` that ``config.json`` lacks."""
    missing = [k for k in required if k not in hf_config]
    if missing:
        raise ValueError(f"{source}: missing keys {missing}")


def number(hf: dict, key: str, default: float, source: str) -> float:
    """``hf[key]`` (``default`` when absent) as a float, or a ValueError if it is not a number."""
    value = hf.get(key, default)
    if not is_number(value):
        raise ValueError(f"{source}: {key}={value!r} must be a number, not {type(value).__name__}")
    return float(value)


def model_type_hint(hf: dict, hints: dict) -> str:
    """The hint for ``config.json``'s ``model_type`` ("" for an unknown one, or one that is not a string)."""
    model_type = hf.get("model_type")
    return hints.get(model_type, "") if isinstance(model_type, str) else ""


def rope_base_of(hf: dict, source: str) -> float:
    """The RoPE base of a ``config.json`` (``rope_parameters``, or the older ``rope_theta``), plain RoPE only.

    A scaled RoPE (``rope_type`` "yarn", "linear", "llama3", ... in ``rope_parameters`` or the
    older ``rope_scaling``) is refused: its angles are not those of our rotation.
    """
    theta = hf.get("rope_theta", 10000.0)
    for key in ("rope_scaling", "rope_parameters"):
        params = hf.get(key)
        if params is None:
            continue
        if not isinstance(params, dict):
            raise ValueError(f"{source}: {key} must be a JSON object or null, got {params!r}")
        kind = params.get("rope_type", params.get("type", "default"))
        if kind != "default":
            raise ValueError(f"{source}: {key} has rope_type {kind!r}, which is not supported; only the plain "
                             "rotation ('default', no scaling) has an equivalent here")
        theta = params.get("rope_theta", theta)
    if not is_number(theta) or not theta > 0:
        raise ValueError(f"{source}: rope_theta={theta!r} must be a positive number")
    return float(theta)


def import_tensors(table_rows, tensors: dict, transforms: dict, source: str) -> dict[str, np.ndarray]:
    """Our flat float32 parameters from ``tensors``, every row's name and shape checked.

    Pops what it uses from ``tensors``; what is left is for the caller to judge (tied head
    copies, unexpected tensors).
    """
    flat = {}
    for hf, shape, ours, how in table_rows:
        if hf not in tensors:
            raise ValueError(f"{source}: tensor {hf!r} is missing (config.json's sizes need it for {ours})")
        value = tensors.pop(hf)
        if value.shape != shape:
            raise ValueError(f"{source}: tensor {hf!r} has shape {tuple(value.shape)} but config.json's "
                             f"sizes need {shape}")
        if value.dtype.kind != "f":
            raise ValueError(f"{source}: tensor {hf!r} has dtype {value.dtype}; weights must be floating point")
        flat[ours] = np.ascontiguousarray(transforms[how][1](value), dtype=np.float32)
    return flat


def check_tied_copy(tensors: dict, head: str, embed: np.ndarray, source: str) -> None:
    """A stored copy of a tied head must equal the embedding (and is then dropped from ``tensors``)."""
    if head in tensors:
        value = tensors.pop(head)
        if value.shape != embed.shape or not np.array_equal(value.astype(np.float32), embed):
            raise ValueError(f"{source}: {head!r} differs from the embedding, but config.json says "
                             "tie_word_embeddings=true; set it to false for a separate output head")


def check_no_extra(tensors: dict, source: str, hint: str) -> None:
    """A ValueError naming (up to five) tensors that no row of the table used."""
    extra = sorted(tensors)
    if extra:
        raise ValueError(f"{source}: unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}; {hint}")


# --------------------------------------------------------------------------- writing
def export_tensors(table_rows, flat: dict, transforms: dict) -> dict[str, np.ndarray]:
    """``transformers``-named float32 tensors from our flat parameters, every shape checked."""
    out = {}
    for hf, shape, ours, how in table_rows:
        value = np.ascontiguousarray(transforms[how][0](np.asarray(flat[ours], dtype=np.float32)))
        if value.shape != shape:
            raise ValueError(f"parameter {ours!r} has shape {flat[ours].shape}, which does not match the config "
                             f"({hf!r} must be {shape})")
        out[hf] = value
    return out


def write_dir(path: PathLike, hf_config: dict, tensors: dict[str, np.ndarray], tokenizer=None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and, with ``tokenizer`` (a `Tokenizer`), its
    ``tokenizer.json`` into the directory ``path``, as one unit (see the module docstring).

    Raises:
        ValueError: if ``path`` is a file, is the current directory (or holds it), or its parent is missing.
        OSError: the disk refused a write; the directory at ``path`` is then as it was.
    """
    folder = Path(path)
    files = {  # everything is encoded (and checked) before anything is written
        # transformers refuses a safetensors file without {"format": "pt"} in its metadata
        WEIGHTS: safetensors_io.to_bytes(tensors, metadata={"format": "pt"}),
        CONFIG: json.dumps(hf_config, indent=2) + "\n",
    }
    if tokenizer is not None:
        files[TOKENIZER] = hf_tokenizer.tokenizer_json(tokenizer)
    old = _existing_directory(folder)
    target = old or folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        for name, data in files.items():
            atomic_write(tmp / name, data)
        if old is None:
            os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes the directory private (0700)
            os.rename(tmp, target)  # note: fails (and cleans up) if someone created the folder meanwhile
        else:
            replaced = MODEL_FILES + (TOKENIZER_FILES if tokenizer is not None else ())
            _copy_others(old, tmp, replaced)
            shutil.copymode(old, tmp)
            _swap(old, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _existing_directory(folder: Path):
    """The resolved path of the existing directory ``folder``, None if there is none (and its parent exists)."""
    if not folder.exists():
        parent = folder.parent if str(folder.parent) else Path(".")
        if not parent.is_dir():
            raise ValueError(f"cannot write {folder}: directory {parent} does not exist; create it first")
        return None
    if not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a directory; choose a directory for the checkpoint")
    resolved = folder.resolve()  # a symlink to a directory: the directory it points to is replaced
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise ValueError(f"cannot write a checkpoint into {folder}: an export replaces the whole directory, and "
                         "this one is (or holds) the current directory; give a subdirectory, e.g. "
                         f"{folder / 'checkpoint'}")
    return resolved


def _copy_others(old: Path, new: Path, replaced: tuple) -> None:
    """Copy into ``new`` the entries of ``old`` that match none of the patterns ``replaced``: hard links
    where possible, so a large file costs nothing."""
    for entry in sorted(old.iterdir()):
        if any(fnmatch.fnmatch(entry.name, pattern) for pattern in replaced):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, new / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, new / entry.name)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except (OSError, NotImplementedError):  # another filesystem, or one without hard links
        shutil.copy2(src, dst, follow_symlinks=False)


def _swap(old: Path, new: Path) -> None:
    """Put the directory ``new`` in the place of ``old``: ``old`` aside, ``new`` in, ``old`` removed."""
    aside = new.with_suffix(".old")
    os.rename(old, aside)
    try:
        os.rename(new, old)
    except BaseException:
        os.rename(aside, old)  # put the old directory back
        raise
    shutil.rmtree(aside, ignore_errors=True)
