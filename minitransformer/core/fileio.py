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


def current_umask() -> int:
    """The process's umask: what a new file or folder made with its usual mode gets."""
    mask = os.umask(0)  # the only portable way to read the umask is to set it and restore it
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, data: Union[str, bytes]) -> Path:
    """Write ``data`` (text is written as UTF-8) to ``path`` atomically; return the path.

    Raises:
        ValueError: if the parent directory does not exist, or ``path`` is a folder (named in the message).
        OSError: the disk or a permission refused the write; its ``filename`` is ``path`` (not the
            temporary file, which the user never asked for).
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"cannot write {path}: directory {parent} does not exist; create it first")
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder; give the path of a file")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)  # see temporary_name_pattern
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes the file private (0600); give it the usual mode
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise
    _fsync_directory(parent)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows: directories cannot be opened this way, and renames are durable there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename itself is still atomic
    finally:
        os.close(fd)


def temporary_name_pattern(path: PathLike) -> str:
    """The glob that matches the temporary files `atomic_write` makes for ``path``."""
    return f".{Path(path).name}.*.tmp"


def remove_stale_temporaries(path: PathLike) -> list:
    """Delete temporary files left beside ``path`` by a writer that was killed; return what was removed.

    note: only one process should write a given path at a time; another writer's
    half-written temporary file would be removed too.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    removed = []
    if parent.is_dir():
        for tmp in parent.glob(temporary_name_pattern(path)):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed
