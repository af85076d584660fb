"""The two operations all of byte-pair encoding is made of, and what training reports.

BPE (Sennrich et al., 2016, after Gage, 1994) starts from the 256 byte values and
repeatedly replaces the most frequent adjacent pair of tokens with a new token.
Everything else in this package (both trainers, the encoder, the show-your-work
trace) is built from `count_pairs` and `merge`.

    >>> count_pairs([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    >>> merge([1, 2, 3, 1, 2], (1, 2), 256)
    [256, 3, 256]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

Pair = tuple[int, int]


def count_pairs(ids: list[int], counts: Optional[dict[Pair, int]] = None) -> dict[Pair, int]:
    """Count every adjacent pair in ``ids`` (overlapping pairs count: ``aaa`` has two ``(a, a)``).

    Adds into ``counts`` if given. note: the dict's insertion order is the order
    in which pairs are first seen, which is what the training tie rule relies on.
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, scanning left to right, by ``new_id``.

    subtle: occurrences are taken greedily from the left and never overlap, so
    ``merge([a, a, a], (a, a), X)`` is ``[X, a]``, not ``[a, X]``.
    """
    out = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


@dataclass(frozen=True)
class TrainProgress:
    """What a trainer reports after each merge (passed to ``callback``).

    Attributes:
        step: merges done so far (1 after the first merge).
        total: merges requested (``vocab_size - 256``).
        pair: the pair just merged.
        new_id: the id it became.
        count: how often the pair occurred when it was chosen.
    """

    step: int
    total: int
    pair: Pair
    new_id: int
    count: int


@dataclass
class TrainResult:
    """The outcome of training: the merges in rank order, and whether training stopped early.

    Attributes:
        merges: ``merges[r]`` is the pair that became token ``256 + r``.
        counts: how often each merge's pair occurred when it was chosen.
        requested: the number of merges asked for.
        stopped_early: True if fewer than ``requested`` merges were learned.
        reason: why training ended: ``"done"``, ``"callback"`` (the callback
            returned False), or ``"no pairs left"`` (every chunk is one token).
    """

    merges: list[Pair]
    counts: list[int] = field(default_factory=list)
    requested: int = 0
    reason: str = "done"

    @property
    def stopped_early(self) -> bool:
        return len(self.merges) < self.requested

    def __str__(self) -> str:
        if not self.stopped_early:
            return f"learned {len(self.merges)} merges"
        return f"stopped early ({self.reason}): learned {len(self.merges)} of {self.requested} merges"


ProgressCallback = Callable[[TrainProgress], Optional[bool]]


def check_train_args(text: str, vocab_size: int) -> int:
    """Validate trainer input; return the number of merges to learn."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}; decode bytes first")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256:
        raise ValueError(
            f"vocab_size must be an int >= 256 (the 256 byte tokens come first), got {vocab_size!r}"
        )
    return vocab_size - 256


def encode_chunks_utf8(chunks) -> list[bytes]:
    """UTF-8 bytes of each chunk, with a clear error for text that is not valid Unicode."""
    try:
        return [c.encode("utf-8") for c in chunks]
    except UnicodeEncodeError:
        raise ValueError(invalid_unicode_message("".join(chunks))) from None


def invalid_unicode_message(text: str) -> str:
    """Say where ``text`` stops being encodable as UTF-8 (a lone surrogate) and how to fix it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad, where = exc.object[exc.start:exc.end], exc.start
    else:
        return "text is valid UTF-8"  # not reached by callers, which only ask after a failure
    return (
        f"text contains {bad!r} at index {where}, a lone surrogate: it is not valid Unicode and has "
        "no UTF-8 bytes; clean the text first, e.g. text.encode('utf-8', 'replace').decode('utf-8')"
    )


class ProgressBar:
    """The trainer's progress as a tqdm bar (the same kind the model's training draws), usable as a callback.

    The bar closes at ``total``; ``close()`` ends it when training stops before (too few pairs left).
    """

    def __init__(self, stream=None):
        self.stream, self._bar = stream, None

    def __call__(self, p: TrainProgress) -> None:
        if self._bar is None:
            from ..core.progress import progress_bar  # a widget in notebooks, a text bar on stderr in a terminal

            self._bar = progress_bar(p.total, desc="training BPE", file=self.stream,
                             bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} merges [{elapsed}<{remaining}]")
        self._bar.update(p.step - self._bar.n)
        if p.step >= p.total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def report(callback: Optional[ProgressCallback], progress: TrainProgress) -> bool:
    """Call the callback; return True if it asks training to stop (returns False)."""
    return callback is not None and callback(progress) is False
