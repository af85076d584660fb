"""Checks of what the trace is given: the text and how many next tokens to show.

The pipeline (`trace.pipeline`) and the page (`trace.page`) both take a text;
each refuses a bad one here, before any work, with an error that says what to give.
"""

from __future__ import annotations

from ..core.values import is_int


def check_text(text, verb: str) -> None:
    """Refuse anything but a non-empty str (``verb`` says what the text is for: "trace", "show").

    >>> check_text(b"the cat", "trace")
    Traceback (most recent call last):
    ...
    TypeError: text must be a str, got bytes; decode it first (text.decode("utf-8"))
    """
    if not isinstance(text, str):
        fix = 'decode it first (text.decode("utf-8"))' if isinstance(text, (bytes, bytearray)) else \
            f"give the text to {verb} as a str"
        raise TypeError(f"text must be a str, got {type(text).__name__}; {fix}")
    if not text:
        raise ValueError(f"the text is empty: give at least one character to {verb}")


def check_top_k(top_k, vocab_size: int, allow_none: bool = False) -> None:
    """Refuse a ``top_k`` (how many of the likeliest next tokens) that is not an int in 1..vocab_size
    (numpy ints are ints); ``allow_none`` for sampling, where None keeps every token."""
    if allow_none and top_k is None:
        return
    if not is_int(top_k) or not 1 <= top_k <= vocab_size:
        keep_all = ", or None to keep all" if allow_none else ""
        raise ValueError(f"top_k={top_k!r} must be an int in 1..{vocab_size} (the model's vocabulary size){keep_all}")
