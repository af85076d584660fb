"""The ``safetensors`` file format, read and written with numpy alone.

``safetensors`` is how Hugging Face stores weights: a file that can be read
without running any code from it (unlike a pickled ``.bin``). It is simple
enough to write out in full::

    8 bytes      N, the length of the header, unsigned little-endian
    N bytes      a JSON object, UTF-8, padded with spaces:
                   {"__metadata__": {"format": "pt"},               (optional, str -> str)
                    "wte.weight": {"dtype": "F32", "shape": [100, 32],
                                   "data_offsets": [0, 12800]}, ...}
    the rest     the tensors' raw bytes, little-endian, row-major (C order), one
                 after another; data_offsets are [begin, end) inside this part

Reading validates everything the header claims (dtypes, shapes, that each
tensor's byte range has exactly the size its shape needs, that the ranges tile
the data with no gap, overlap or missing byte) and names what is wrong, so a
truncated download or a damaged file is an error that says so, never garbage
weights. Writing goes through `fileio.atomic_write`.

    >>> import os, tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3)},
    ...                      os.path.join(folder, "w.safetensors"), metadata={"format": "pt"})
    ...     load_file(path)["a"].tolist(), read_metadata(path)
    ([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]], {'format': 'pt'})

Deliberately left out: memory mapping (the file is read in one go), float8
types, and writing bfloat16 (numpy has no such type; bfloat16 is *read*, as
float32, since many checkpoints are stored that way).

Reference: the format's specification in the ``huggingface/safetensors`` repository.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.fileio import PathLike, atomic_write

# dtype name in the header -> numpy dtype (little-endian). BF16 has no numpy type: see _bf16_to_f32.
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
READ_ONLY_DTYPES = {"BF16": 2}  # name -> bytes per element; read as float32
MAX_HEADER = 100_000_000  # bytes; the reference implementation's limit too
_ALIGN = 8  # the data part starts at a multiple of 8 bytes, so 8-byte types are aligned


class SafetensorsError(ValueError):
    """A file that is not valid safetensors (a ValueError, so callers need not know this class)."""


# --------------------------------------------------------------------------- reading
def read_header(path: PathLike) -> tuple[dict, dict, int]:
    """Read and validate the header only: ``(tensors, metadata, data_start)``.

    ``tensors`` maps each name to ``{"dtype", "shape", "data_offsets"}``; ``data_start``
    is where the data part begins in the file. Nothing but the header is read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise _bad(path, f"it has {size} bytes, fewer than the 8 that give the header length (truncated?)")
            n = int.from_bytes(prefix, "little")
            if n > MAX_HEADER:
                raise _bad(path, f"its header claims {n:,} bytes, more than the {MAX_HEADER:,} allowed "
                                 "(this is probably not a safetensors file)")
            if 8 + n > size:
                raise _bad(path, f"its header claims {n:,} bytes but the file has only {size - 8:,} after "
                                 "the length prefix (truncated?)")
            raw = f.read(n)
    except FileNotFoundError:
        raise SafetensorsError(f"no safetensors file at {path}") from None
    except IsADirectoryError:
        raise SafetensorsError(f"{path} is a directory, not a safetensors file") from None
    tensors, metadata = _parse_header(path, raw)
    _check_layout(path, tensors, data_size=size - 8 - n)
    return tensors, metadata, 8 + n


def read_metadata(path: PathLike) -> dict:
    """The ``__metadata__`` dict of a file (``{}`` if it has none)."""
    return read_header(path)[1]


def load_file(path: PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, as numpy arrays in the file's order of names.

    Floating types keep their dtype (F16 stays float16), except BF16, which numpy
    lacks: it is widened to float32 exactly (a bfloat16 is the top half of a float32).

    Raises:
        ValueError: naming the file and what is wrong (truncated, malformed header,
            unsupported dtype, byte ranges that do not match the shapes).
    """
    path = Path(path)
    tensors, _, start = read_header(path)
    data = bytearray(path.stat().st_size - start)  # the arrays below are writable views of this buffer
    with open(path, "rb") as f:
        f.seek(start)
        if f.readinto(data) != len(data):
            raise _bad(path, "it changed while it was being read")
    out = {}
    for name, info in tensors.items():
        begin, end = info["data_offsets"]
        count = math.prod(info["shape"])
        if info["dtype"] in READ_ONLY_DTYPES:  # BF16
            bits = np.frombuffer(data, np.dtype("<u2"), count, begin)
            array = _bf16_to_f32(bits)
        else:
            dtype = DTYPES[info["dtype"]]
            array = np.frombuffer(data, dtype, count, begin)
            if dtype.byteorder == "<" and not np.little_endian:  # note: only on a big-endian machine
                array = array.astype(dtype.newbyteorder("="))
        out[name] = array.reshape(info["shape"])
    return out


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) -> float32: the 16 bits become the high half of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _bad(path, what: str) -> SafetensorsError:
    return SafetensorsError(f"{path} is not a valid safetensors file: {what}")


def _parse_header(path, raw: bytes) -> tuple[dict, dict]:
    def no_duplicates(pairs):
        seen = {}
        for key, value in pairs:
            if key in seen:
                raise _bad(path, f"the header names {key!r} twice")
            seen[key] = value
        return seen

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise _bad(path, "its header is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _bad(path, f"its header is not valid JSON ({exc})") from None
    except RecursionError:  # e.g. thousands of nested [ : no header is nested deeper than three levels
        raise _bad(path, "its header is nested too deeply to be a safetensors header") from None
    if not isinstance(header, dict):
        raise _bad(path, f"its header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None)
    metadata = {} if metadata is None else metadata  # null: no metadata, as the reference reader takes it
    if not (isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())):
        raise _bad(path, f'"__metadata__" must be a JSON object that maps strings to strings (like '
                         f'{{"format": "pt"}}), got {metadata!r:.80}')
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise _bad(path, f"tensor {name!r} must have exactly the keys dtype, shape, data_offsets; got {info!r}")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dtype, str) or (dtype not in DTYPES and dtype not in READ_ONLY_DTYPES):
            raise _bad(path, f"tensor {name!r} has dtype {dtype!r}, which is not supported; supported: "
                             f"{', '.join(list(DTYPES) + list(READ_ONLY_DTYPES))}")
        if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
            raise _bad(path, f"tensor {name!r} has shape {shape!r}; it must be a list of non-negative ints")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_uint, offsets))
                and offsets[0] <= offsets[1]):
            raise _bad(path, f"tensor {name!r} has data_offsets {offsets!r}; they must be [begin, end] "
                             "with 0 <= begin <= end")
        expected = math.prod(shape) * _itemsize(dtype)
        if offsets[1] - offsets[0] != expected:
            raise _bad(path, f"tensor {name!r} ({dtype} {shape}) needs {expected} bytes but its data_offsets "
                             f"{offsets} span {offsets[1] - offsets[0]}")
    return header, metadata


def _check_layout(path, tensors: dict, data_size: int) -> None:
    """The byte ranges must tile the data part exactly: no gap, no overlap, nothing missing or extra."""
    end = 0
    for name, info in sorted(tensors.items(), key=lambda kv: tuple(kv[1]["data_offsets"])):
        begin, stop = info["data_offsets"]
        if begin != end:
            what = "overlaps the tensor before it" if begin < end else f"leaves a gap of {begin - end} bytes before it"
            raise _bad(path, f"tensor {name!r} at data_offsets {info['data_offsets']} {what}")
        end = stop
    if end > data_size:
        raise _bad(path, f"the tensors need {end:,} bytes of data but the file holds only {data_size:,} "
                         "(truncated?)")
    if end < data_size:
        raise _bad(path, f"the file has {data_size - end:,} bytes after the last tensor's data")


def _is_uint(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _itemsize(dtype_name: str) -> int:
    return READ_ONLY_DTYPES.get(dtype_name) or DTYPES[dtype_name].itemsize


# --------------------------------------------------------------------------- writing
def dtype_name(dtype: np.dtype) -> str:
    """The header name of a numpy dtype (``float32`` -> ``"F32"``), or a ValueError listing the supported ones."""
    dtype = np.dtype(dtype)
    for name, dt in DTYPES.items():
        if dtype.kind == dt.kind and dtype.itemsize == dt.itemsize:
            return name
    raise ValueError(f"dtype {dtype} cannot be stored in safetensors by this writer; supported: "
                     f"{', '.join(str(d) for d in DTYPES.values())} (convert with .astype first)")


def to_bytes(tensors: dict[str, np.ndarray], metadata: Optional[dict] = None) -> bytes:
    """The whole file as bytes (what `save_file` writes)."""
    if not isinstance(tensors, dict):
        raise ValueError(f"tensors must be a dict of name -> numpy array, got {type(tensors).__name__}")
    if metadata is not None and not (isinstance(metadata, dict) and
                                     all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise ValueError(f"metadata must be a dict of str -> str, got {metadata!r}")
    arrays = {}
    for name, array in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"tensor names must be non-empty strings other than '__metadata__', got {name!r}")
        if not isinstance(array, np.ndarray):
            raise ValueError(f"tensor {name!r} must be a numpy array, got {type(array).__name__}")
        arrays[name] = (dtype_name(array.dtype), array)
    # the reference writer's order: widest dtypes first (keeps every tensor aligned), then by name
    order = sorted(arrays, key=lambda n: (-arrays[n][1].dtype.itemsize, n))
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    chunks, offset = [], 0
    for name in order:
        dname, array = arrays[name]
        data = np.ascontiguousarray(array, dtype=DTYPES[dname]).tobytes()  # little-endian, C order
        header[name] = {"dtype": dname, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % _ALIGN)  # pad with spaces so the data part starts aligned
    return len(text).to_bytes(8, "little") + text + b"".join(chunks)


def save_file(tensors: dict[str, np.ndarray], path: PathLike, metadata: Optional[dict] = None) -> Path:
    """Write ``tensors`` (name -> numpy array) to ``path`` in safetensors format, atomically.

    Args:
        metadata: optional str -> str pairs stored under ``"__metadata__"``
            (``transformers`` wants ``{"format": "pt"}``).

    Raises:
        ValueError: for a name or dtype that cannot be stored (the message lists what can).
    """
    return atomic_write(path, to_bytes(tensors, metadata))
