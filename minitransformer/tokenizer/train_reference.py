"""The reference BPE trainer: short enough to read aloud in a lecture.

Each step recounts every adjacent pair in the whole training text, picks the
most frequent one, and merges it everywhere. That is the whole algorithm. It
costs O(text length) per merge, so it is slow on real corpora; `train_fast`
gives the same merges much faster and is tested against this function.

Tie rule: when several pairs share the highest count, the pair whose first
occurrence in the current (partly merged) training sequence comes earliest
wins. This is the rule of minbpe (Karpathy, 2024): `count_pairs` fills a dict in
first-seen order, and `max` returns the first of equal maxima.
"""

from __future__ import annotations

from typing import Optional

from .bpe import (
    ProgressCallback,
    TrainProgress,
    TrainResult,
    check_train_args,
    count_pairs,
    encode_chunks_utf8,
    merge,
    report,
)
from .patterns import compile_pattern, resolve_pattern, split_compiled


def train_reference(
    text: str, vocab_size: int, pattern: str = "gpt4", callback: Optional[ProgressCallback] = None
) -> TrainResult:
    """Learn ``vocab_size - 256`` merges from ``text`` by recounting all pairs at every step.

    Args:
        text: the training text.
        vocab_size: 256 byte tokens plus the number of merges to learn.
        pattern: split pattern name (``"gpt2"``, ``"gpt4"``) or a custom regex.
        callback: called with a `TrainProgress` after each merge; return False to stop.

    Returns:
        A `TrainResult` with the merges in rank order.

    >>> train_reference("aaabdaaabac", 259, pattern=r"[\\s\\S]+").merges
    [(97, 97), (256, 97), (257, 98)]
    """
    num_merges = check_train_args(text, vocab_size)
    chunks = split_compiled(text, compile_pattern(resolve_pattern(pattern)))
    ids = [list(b) for b in encode_chunks_utf8(chunks)]  # one list of byte values per chunk

    result = TrainResult(merges=[], requested=num_merges)
    for step in range(num_merges):
        counts: dict = {}
        for chunk_ids in ids:
            count_pairs(chunk_ids, counts)  # pairs never span two chunks
        if not counts:
            result.reason = "no pairs left"
            break
        pair = max(counts, key=counts.get)  # ties: the first-seen pair wins
        new_id = 256 + step
        ids = [merge(chunk_ids, pair, new_id) for chunk_ids in ids]
        result.merges.append(pair)
        result.counts.append(counts[pair])
        if report(callback, TrainProgress(step + 1, num_merges, pair, new_id, counts[pair])):
            result.reason = "callback"
            break
    return result
