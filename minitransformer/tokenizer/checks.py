"""Checks of what a `Tokenizer` is built from and given: merges, special tokens, ids."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

from .bpe import Pair, invalid_unicode_message


def as_id_list(ids, method: str = "decode") -> list:
    """Accept a list, tuple, or 1-D numpy array of ids; numpy ints become Python ints.

    A single id (or None) is a TypeError that names ``method``, the call that was given it.
    """
    if not isinstance(ids, Iterable) or getattr(ids, "ndim", None) == 0:  # an int, None, a numpy scalar
        raise TypeError(f"{method} takes a list of ids, got {type(ids).__name__}; for one id use {method}([id])")
    if hasattr(ids, "tolist"):
        if getattr(ids, "ndim", 1) != 1:
            raise ValueError(f"ids must be one-dimensional, got an array of shape {ids.shape}")
        return ids.tolist()
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"ids must be a sequence of ints, got {type(ids).__name__}")
    # numpy integer scalars (e.g. from iterating an array) count as ints; bools and floats do not
    return [i if type(i) is int or isinstance(i, bool) or not hasattr(i, "__index__") else operator.index(i)
            for i in ids]


def check_merges(merges) -> list[Pair]:
    out = []
    for r, pair in enumerate(merges):
        if (
            not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) for i in pair)
        ):
            raise ValueError(f"merge {r} must be a pair of two int ids, got {pair!r}")
        a, b = pair
        if not (0 <= a < 256 + r and 0 <= b < 256 + r):
            raise ValueError(
                f"merge {r} {tuple(pair)} uses an id that does not exist yet: merge {r} may only use ids "
                f"0..{256 + r - 1} (bytes and earlier merges)"
            )
        out.append((a, b))
    return out


def check_specials(specials, first_id: int) -> dict[str, int]:
    if isinstance(specials, str):
        raise ValueError(f"special_tokens must be a list of strings, got the string {specials!r}")
    out: dict[str, int] = {}
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
        if s in out:
            raise ValueError(f"special token {s!r} is listed twice")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"special token {s!r}: " + invalid_unicode_message(s)) from None
        out[s] = first_id + len(out)
    return out
