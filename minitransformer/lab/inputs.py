"""Checks of what the lab is given: token ids, clean and corrupted pairs, a metric's answer tokens.

Every public function of the lab that takes ids refuses bad ones here, before any run,
with an error that says what to give instead (in the model's own words where it has them).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.values import is_int

SAME_LENGTH = "clean and corrupted prompts must have the same number of tokens (pad or pick a same-length corruption)"


def check_ids(ids, name: str = "ids") -> np.ndarray:
    """Return ``ids`` as an array, refusing any shape but (B, T) as the model does.

    >>> check_ids([3, 7, 12])
    Traceback (most recent call last):
    ...
    ValueError: ids must be 2-D (batch, time); got shape (3,): wrap one sequence as ids[None, :]
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        fix = f": wrap one sequence as {name}[None, :]" if ids.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (batch, time); got shape {ids.shape}{fix}")
    return ids


def check_same_shape(shape, other_shape, what: str, other_what: str) -> None:
    """Refuse two runs of different (B, T): patching puts one run's activations into the other.

    >>> check_same_shape((1, 10), (1, 5), "clean_ids", "corrupted_ids")
    Traceback (most recent call last):
    ...
    ValueError: clean_ids has shape (1, 10) but corrupted_ids (1, 5); clean and corrupted prompts must have ...
    """
    shape, other_shape = tuple(shape), tuple(other_shape)
    if shape != other_shape:
        fix = SAME_LENGTH if shape[1:] != other_shape[1:] else "give both the same number of prompts (rows)"
        raise ValueError(f"{what} has shape {shape} but {other_what} {other_shape}; {fix}")


def check_pair(clean_ids, corrupted_ids) -> tuple[np.ndarray, np.ndarray]:
    """Return both as (B, T) arrays of one shape, or raise a ValueError that says which is wrong."""
    clean_ids, corrupted_ids = check_ids(clean_ids, "clean_ids"), check_ids(corrupted_ids, "corrupted_ids")
    check_same_shape(clean_ids.shape, corrupted_ids.shape, "clean_ids", "corrupted_ids")
    return clean_ids, corrupted_ids


def check_token_ids(ids, name: str, vocab_size: Optional[int] = None, one: bool = False) -> np.ndarray:
    """Return token ids (an int, or with ``one=False`` also one per row) as an array; refuse any outside 0..V-1.

    Negative ids are refused although numpy would read them from the end of the vocabulary:
    that is never the token meant. Without ``vocab_size`` only the lower bound is checked.

    >>> check_token_ids(-1, "correct")
    Traceback (most recent call last):
    ...
    ValueError: correct=-1 is not a token id: ids are 0..vocab_size-1 (a negative id would read the vocabulary from its end)
    """
    array = np.asarray(ids)
    if array.dtype.kind not in "iu" or array.ndim > (0 if one else 1):
        form = "an int" if one else "an int, or a 1-D list of ints (one per row)"
        raise ValueError(f"{name}={ids!r} must be a token id: {form}")
    top = "vocab_size-1" if vocab_size is None else str(vocab_size - 1)
    bad = (array < 0) | (False if vocab_size is None else array >= vocab_size)
    if bad.any():
        wrong = array[bad].flat[0] if array.ndim else array
        why = " (a negative id would read the vocabulary from its end)" if wrong < 0 else \
            ": was it encoded with a tokenizer of a different vocab_size?"
        shown = f"{name}={ids!r}" if array.ndim == 0 else f"{name}={ids!r} holds {wrong}, which"
        raise ValueError(f"{shown} is not a token id: ids are 0..{top}{why}")
    return array


def check_position(position, T: int) -> int:
    """Return ``position`` if it indexes one of T positions (-1 is the last), else refuse it."""
    if not is_int(position) or not -T <= position < T:
        raise ValueError(f"position={position!r} must be an int in -{T}..{T - 1}: the prompt has {T} positions "
                         "(-1 is the last)")
    return int(position)
