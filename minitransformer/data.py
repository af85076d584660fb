"""Corpora: where the text comes from, with no download.

The default corpus is the Python language documentation that ships with every
CPython (``pydoc_data.topics``: the reference chapters that ``help("if")`` shows,
about 465 KB of English prose and code). On first use it is written to
``data/pydoc_topics.txt`` so it can be opened like any text file. It is not
committed: each machine builds it from its own Python, so its exact size depends
on the Python version.

Small texts written for this project live in ``data/texts/``:

- ``tiny``: three paragraphs of English about tokens, for examples and tests;
- ``multilingual``: a line in each of a dozen scripts, emoji (with skin tones,
  ZWJ sequences and flags), combining marks, tabs, runs of spaces and a CRLF.

    >>> text = load_corpus("tiny")
    >>> text.startswith("A tokenizer decides")
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from .fileio import atomic_write

CORPORA = {
    "pydoc": "the Python language reference topics from pydoc_data (built on first use)",
    "tiny": "three paragraphs of English written for this project (data/texts/tiny.txt)",
    "multilingual": "a line in each of a dozen scripts plus emoji (data/texts/multilingual.txt)",
}
DEFAULT_CORPUS = "pydoc"


def data_dir() -> Path:
    """The ``data/`` directory: ``$MINITRANSFORMER_DATA`` if set, else the one next to the package."""
    env = os.environ.get("MINITRANSFORMER_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "data"


def build_pydoc_corpus() -> str:
    """The text of every ``pydoc_data.topics`` entry, in sorted topic order, separated by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip("\n") for k in sorted(topics)) + "\n"


def corpus_path(name: str = DEFAULT_CORPUS) -> Path:
    """The file holding corpus ``name``; the pydoc corpus is built there if it is missing."""
    _check_name(name)
    if name == "pydoc":
        path = data_dir() / "pydoc_topics.txt"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, build_pydoc_corpus())
        return path
    path = data_dir() / "texts" / f"{name}.txt"
    if not path.exists():
        raise ValueError(
            f"corpus file {path} is missing; the small texts ship in the repository's data/texts/ "
            "(install from a clone with `pip install -e .`, or set MINITRANSFORMER_DATA to a data directory)"
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
