"""Corpora: where the text comes from, with no download.

The default corpus is the Python language documentation that ships with every
CPython (``pydoc_data.topics``: the reference chapters that ``help("if")`` shows,
about 465 KB of English prose and code). On first use it is written into the
user's cache directory (`cache_dir`) so it can be opened like any text file; one
file per Python version, since each Python ships its own documentation.

Small texts written for this project ship inside the package, in
``minitransformer/data/texts/``:

- ``tiny``: three paragraphs of English about tokens, for examples and tests;
- ``multilingual``: a line in each of a dozen scripts, emoji (with skin tones,
  ZWJ sequences and flags), combining marks, tabs, runs of spaces and a CRLF.

    >>> text = load_corpus("tiny")
    >>> text.startswith("A tokenizer decides")
    True
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.fileio import atomic_write

CORPORA = {
    "pydoc": "the Python language reference topics from pydoc_data (built on first use)",
    "tiny": "three paragraphs of English written for this project (minitransformer/data/texts/tiny.txt)",
    "multilingual": "a line in each of a dozen scripts plus emoji (minitransformer/data/texts/multilingual.txt)",
}
DEFAULT_CORPUS = "pydoc"


def data_dir() -> Path:
    """The package's data (small texts, the course model): ``$MINITRANSFORMER_DATA`` if set, else
    ``minitransformer/data/``, installed with the package. Read only: nothing is written here."""
    env = os.environ.get("MINITRANSFORMER_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "data"


def cache_dir() -> Path:
    """Where built files (the pydoc corpus) are kept: never the installed package or the current folder.

    ``$MINITRANSFORMER_CACHE`` if set; else the platform's convention: ``%LOCALAPPDATA%``
    on Windows, ``~/Library/Caches`` on macOS, ``$XDG_CACHE_HOME`` or ``~/.cache`` elsewhere;
    each followed by ``minitransformer``.
    """
    env = os.environ.get("MINITRANSFORMER_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "minitransformer"


def build_pydoc_corpus() -> str:
    """The text of every ``pydoc_data.topics`` entry, in sorted topic order, separated by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)) + "\n"


def corpus_path(name: str = DEFAULT_CORPUS) -> Path:
    """The file holding corpus ``name``; the pydoc corpus is built there if it is missing."""
    _check_name(name)
    if name == "pydoc":
        folder = cache_dir()
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"the cache folder {folder} is a file; set MINITRANSFORMER_CACHE to a folder (or unset it)")
        path = folder / f"pydoc_topics-python{platform.python_version()}.txt"
        text = build_pydoc_corpus().encode("utf-8")  # a few milliseconds: the cache is checked against it
        try:
            whole = path.read_bytes() == text
        except OSError:  # missing (or unreadable: then writing it says what is wrong)
            whole = None
        if not whole:
            if whole is False:  # truncated, emptied or edited: a cache is rebuilt, never trained on
                print(f"note: the corpus cache {path} differs from Python's pydoc topics; rebuilt it", file=sys.stderr)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                atomic_write(path, text)
            except OSError as exc:
                raise OSError(f"cannot write the corpus cache {path} ({exc.strerror or exc}); set "
                              "MINITRANSFORMER_CACHE to a writable folder") from None
        return path
    path = data_dir() / "texts" / f"{name}.txt"
    if not path.exists():
        raise ValueError(
            f"corpus file {path} is missing; the small texts ship inside the package (minitransformer/data/texts/): "
            "reinstall minitransformer, or unset MINITRANSFORMER_DATA if it points elsewhere"
        )
    return path


def load_corpus(name: str = DEFAULT_CORPUS) -> str:
    """The text of corpus ``name`` (one of `CORPORA`), read exactly as stored (no newline translation)."""
    with open(corpus_path(name), encoding="utf-8", newline="") as f:
        return f.read()


def split_text(text: str, train_fraction: float = 0.9) -> tuple[str, str]:
    """Cut ``text`` at the first line break after ``train_fraction`` of it: (train, held_out).

    Held-out text is what compression and encoding speed are measured on, so
    that a tokenizer is never judged on the text it was trained on.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be between 0 and 1 (exclusive), got {train_fraction!r}")
    cut = int(len(text) * train_fraction)
    newline = text.find("\n", cut)
    cut = newline + 1 if newline >= 0 else cut
    return text[:cut], text[cut:]


def _check_name(name: str) -> None:
    if name not in CORPORA:
        listing = "; ".join(f"{k}: {v}" for k, v in CORPORA.items())
        raise ValueError(f"unknown corpus {name!r}; valid corpora are {listing}")


@dataclass
class CorpusTokens:
    """A corpus cut into training and held-out token streams by the tokenizer that made them.

    Attributes:
        tokenizer: the `Tokenizer` used (trained on the training text, or given).
        train, val: int64 arrays of token ids.
        held_out: False if the held-out text was too short for one window, so that
            ``val`` is the training stream (a small corpus such as ``"tiny"``).
    """

    tokenizer: object
    train: np.ndarray
    val: np.ndarray
    held_out: bool


def corpus_tokens(name: str, vocab_size: int, context: int, tokenizer=None, verbose: bool = False) -> CorpusTokens:
    """Tokenize corpus ``name`` for a model of ``vocab_size`` ids and windows of ``context`` tokens.

    Without ``tokenizer``, one is trained on the training split: ``vocab_size - 1`` merged
    and byte ids plus ``<|endoftext|>``, so the tokenizer's ids are exactly the model's.
    The held-out split (`split_text`) is what validation reads, unless it is shorter than
    one window of ``context + 1`` tokens; then validation falls back to the training stream
    and ``held_out`` says so, instead of failing later inside the trainer. ``verbose`` draws
    the tokenizer trainer's progress bar.
    """
    from ..tokenizer import Tokenizer

    train_text, val_text = split_text(load_corpus(name))
    tok = tokenizer or Tokenizer.train(train_text, vocab_size - 1, special_tokens=["<|endoftext|>"],
                                         verbose=verbose)
    train = np.array(tok.encode_ordinary(train_text), dtype=np.int64)
    val = np.array(tok.encode_ordinary(val_text), dtype=np.int64)
    held_out = len(val) >= context + 2
    return CorpusTokens(tok, train, val if held_out else train, held_out)
