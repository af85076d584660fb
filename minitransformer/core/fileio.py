"""Writing files so that nothing is lost: write a temporary file, then rename it.

A crash or an error halfway through a write leaves the old file untouched and no
half-written file behind, because ``os.replace`` is atomic on one filesystem.
Every file this package writes (tokenizers, vocab listings, checkpoints) goes
through `atomic_write`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read the umask is to set it and restore it
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, data: Union[str, bytes]) -> Path:
    """Write ``data`` (text is written as UTF-8) to ``path`` atomically; return the path.

    Raises:
        ValueError: if the parent directory does not exist (named in the message).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: directory {parent} does not exist; create it first")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); give it the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
