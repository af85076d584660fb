"""Encoding at speed: every new chunk of a call merged at once, in numpy (the fast path).

The reference encoder (`Tokenizer._encode_chunk`) takes one chunk at a time and,
in a Python loop, finds its lowest-ranked pair and merges it. Chunks never
interact (merges stop at chunk boundaries), so the same work can be laid out as
*one* array holding the bytes of every new chunk side by side, and each step
done for all chunks together:

    chunk:   |  " the"         |  " cat"        |  "s"  |
    ids:     [32 116 104 101    32  99  97 116    115 ]     <- the bytes, concatenated
    rank:    [r0  r1  r2  --    r3  r4  r5  --     --  ]     <- rank of each pair, "--" at chunk ends

One *sweep* then is a handful of whole-array operations:

1. look up the rank of every adjacent pair (one sorted-key search for all pairs);
2. the lowest rank of each chunk (``np.minimum.reduceat`` over the chunk starts);
3. merge, in every chunk at once, each occurrence of that chunk's lowest pair
   (leftmost first when occurrences overlap, as in ``aaa``);
4. drop the chunks with no mergeable pair left; repeat until none is left.

A chunk of n bytes needs at most n - 1 sweeps, and every sweep applies, in
every chunk, exactly the merge the reference would apply next, so the ids are
the same.

This is *hardware parallelism*, the second of the three views of optimisation
in notebook 10: the same work done in fewer seconds by shaping it for the
machine. The Python loop pays tens of nanoseconds of interpreter bookkeeping
for every pair it looks at; one numpy operation looks at thousands of pairs in
a compiled loop, about a nanosecond each, with the data laid out contiguously
so the caches and vector units are used well. The work is regrouped, not
reduced: the sweeps make the same merges as the loop, all chunks at a time.
What stays per chunk in Python (splitting the text, looking up the memo,
joining the ids) is now most of the time an encode takes.

Glossary of dimensions: N tokens of all active chunks, A active chunks, M merges.

    >>> from minitransformer.tokenizer.patterns import GPT4_SPLIT_PATTERN
    >>> enc = FastEncoder({(97, 97): 256, (256, 97): 257}, GPT4_SPLIT_PATTERN)
    >>> enc.encode_chunks(["aaaaa", " a", "aaa"])   # aaaaa -> aa|aa|a -> aa|aaa
    [[256, 257], [32, 97], [257]]
"""

from __future__ import annotations

from itertools import chain
from typing import Callable, Optional

import numpy as np

from .bpe import Pair
from .patterns import compile_pattern, split_compiled
from .split_fast import fast_splitter

NO_MERGE = np.iinfo(np.int32).max  # the "rank" of a pair that was never merged
BATCH_BYTES = 1 << 20  # new chunks are merged in batches of about this many bytes (~30 bytes of arrays each)
SMALL_CALL = 40  # fewer new chunks than this go through the per-chunk loop, quicker for them (measured)


class FastEncoder:
    """The fast path's tables for one tokenizer: the split and the merge ranks as sorted arrays.

    Args:
        ranks: ``{(a, b): new_id}``, the tokenizer's merges (a lower new id is an earlier merge).
        pattern: the split regex source; the built-in patterns get the faster ``re`` split.
        one_chunk: the per-chunk encoder (bytes -> ids), used for calls with fewer
            than ``SMALL_CALL`` new chunks: every sweep costs some tens of
            microseconds whatever its size, which only pays off across many chunks.
    """

    def __init__(self, ranks: dict[Pair, int], pattern: str, one_chunk: Optional[Callable[[bytes], list[int]]] = None):
        self.table = MergeTable(ranks)
        self.one_chunk = one_chunk
        compiled = compile_pattern(pattern)
        self.split = fast_splitter(pattern) or (lambda text: split_compiled(text, compiled))

    def encode_chunks(self, chunks: list[str]) -> list[list[int]]:
        """The ids of each chunk, all chunks merged together.

        Raises:
            UnicodeEncodeError: if a chunk holds a lone surrogate (the caller names it).
        """
        data = [c.encode("utf-8") for c in chunks]
        if len(data) < SMALL_CALL and self.one_chunk is not None:
            return [self.one_chunk(d) for d in data]
        if not data:
            return []
        lens = np.fromiter(map(len, data), np.int64, len(data))  # (n_chunks,) bytes per chunk
        # Batches of about BATCH_BYTES, so that memory stays bounded: cut after the chunk that crosses each multiple.
        ends = np.cumsum(lens)  # (n_chunks,)
        crossing = np.searchsorted(ends, np.arange(BATCH_BYTES, ends[-1], BATCH_BYTES)) + 1
        bounds = np.unique(np.r_[0, np.minimum(crossing, len(data)), len(data)]).tolist()
        result: list[list[int]] = []
        for first, last in zip(bounds, bounds[1:]):
            result += self._merge_batch(data[first:last], lens[first:last])
        return result

    def _merge_batch(self, data: list[bytes], lens: np.ndarray) -> list[list[int]]:
        flat = np.frombuffer(b"".join(data), dtype=np.uint8)  # (batch bytes,)
        out, counts = merge_sweeps(flat, lens, self.table)
        out, offsets = out.tolist(), (np.cumsum(lens) - lens).tolist()
        return [out[o:o + n] for o, n in zip(offsets, counts.tolist())]


class MergeTable:
    """The merges as arrays, to look up many pairs at once: pair -> the id it merges into.

    Pair ``(a, b)`` has the key ``a * n_ids + b`` (unique, as every id is below
    ``n_ids``); the keys are sorted, so a lookup is one ``np.searchsorted``. Every
    chunk starts as bytes, so the first sweep, the largest, reads a 256 x 256 table
    instead.
    """

    def __init__(self, ranks: dict[Pair, int]):
        self.n_ids = 256 + len(ranks)
        pairs = np.fromiter(chain.from_iterable(ranks), np.int64, 2 * len(ranks)).reshape(-1, 2)  # (M, 2)
        new_ids = np.fromiter(ranks.values(), np.int32, len(ranks))  # (M,)
        keys = pairs[:, 0] * self.n_ids + pairs[:, 1]  # (M,)
        order = np.argsort(keys)
        # One key more that no pair has (-1), so the table is never empty.
        self.keys = np.r_[-1, keys[order]]  # (M + 1,) sorted
        self.new_ids = np.r_[NO_MERGE, new_ids[order]].astype(np.int32)  # (M + 1,)
        bytes_only = (pairs < 256).all(axis=1)  # (M,) merges of two bytes
        self.byte_pairs = np.full(256 * 256, NO_MERGE, dtype=np.int32)  # (65536,) indexed by a * 256 + b
        self.byte_pairs[pairs[bytes_only, 0] * 256 + pairs[bytes_only, 1]] = new_ids[bytes_only]

    def lookup(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The id each pair ``(a[i], b[i])`` merges into, or NO_MERGE."""
        key = a.astype(np.int64) * self.n_ids + b  # (K,)
        where = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)  # (K,) binary search, all at once
        return np.where(self.keys[where] == key, self.new_ids[where], NO_MERGE)  # (K,)


def pair_ranks(ids, chunk, at, table: MergeTable) -> np.ndarray:
    """The new id the pair starting at each position in ``at`` merges into, or NO_MERGE.

    A pair whose right half lies in the next chunk (or past the end) never merges,
    so only the pairs inside a chunk are looked up.
    """
    ranks = np.full(len(at), NO_MERGE, dtype=np.int32)  # (K,)
    right = np.minimum(at + 1, len(ids) - 1)  # (K,) clipped: the last position has no right neighbour
    inside = np.flatnonzero((at + 1 < len(ids)) & (chunk[at] == chunk[right]))  # (K',)
    ranks[inside] = table.lookup(ids[at[inside]], ids[right[inside]])
    return ranks


def merge_sweeps(flat, lens, table: MergeTable) -> tuple[np.ndarray, np.ndarray]:
    """Merge every chunk of ``flat`` to the end, lowest rank first, all chunks per sweep.

    Args:
        flat: ``(total,) uint8``, the bytes of all chunks, one after the other.
        lens: ``(n_chunks,) int``, the length of each chunk (each at least 1).
        table: the merges.

    Returns:
        ``(out, counts)``: chunk ``k``'s ids are ``out[start_k : start_k + counts[k]]``,
        where ``start_k`` is where its bytes started in ``flat`` (a chunk only shrinks).
    """
    n_chunks = len(lens)
    out = np.zeros(len(flat), dtype=np.int32)  # (total,) each chunk writes where its bytes were
    counts = np.zeros(n_chunks, dtype=np.int64)  # (n_chunks,)
    ids = flat.astype(np.int32)  # (N,) the active tokens
    owner = np.arange(n_chunks)  # (A,) which original chunk each active chunk is
    lens = np.asarray(lens, dtype=np.int64).copy()  # (A,)
    chunk = np.repeat(np.arange(n_chunks), lens)  # (N,) active chunk of each token
    out_start = np.cumsum(lens) - lens  # (n_chunks,) fixed: where each chunk's ids go in `out`
    rank = np.full(len(ids), NO_MERGE, dtype=np.int32)  # (N,) the first sweep: every pair is two bytes
    rank[:-1] = table.byte_pairs[ids[:-1] * 256 + ids[1:]]
    rank[out_start[1:] - 1] = NO_MERGE  # the last byte of a chunk pairs with nothing
    while len(ids):
        starts = np.cumsum(lens) - lens  # (A,) first token of each active chunk
        best = np.minimum.reduceat(rank, starts)  # (A,) lowest rank in each chunk
        done = best == NO_MERGE  # (A,) chunks with nothing left to merge
        if done.any():  # retire them: copy their ids out, keep only the others
            leaving = done[chunk]  # (N,)
            local = np.arange(len(ids)) - starts[chunk]  # (N,) position inside its chunk
            out[out_start[owner[chunk[leaving]]] + local[leaving]] = ids[leaving]
            counts[owner[done]] = lens[done]
            staying = ~leaving
            ids, rank = ids[staying], rank[staying]  # (N',)
            chunk = (np.cumsum(~done) - 1)[chunk[staying]]  # (N',) renumber the chunks that stay
            owner, lens, best = owner[~done], lens[~done], best[~done]  # (A',)
            if not len(ids):
                break
        # Every occurrence of each chunk's lowest pair (pairs have unique ranks, so equal rank = same pair).
        at = np.flatnonzero(rank == best[chunk])  # (K,) sorted positions
        at = leftmost_non_overlapping(at)
        ids[at] = rank[at]  # the left token becomes the merged one ...
        keep = np.ones(len(ids), dtype=bool)
        keep[at + 1] = False  # ... and its right partner goes
        lens -= np.bincount(chunk[at], minlength=len(lens))  # (A,)
        ids, rank, chunk = ids[keep], rank[keep], chunk[keep]  # (N - K,)
        # Only pairs touching a merged token changed: the one it starts and the one before it.
        merged = at - np.arange(len(at))  # (K,) positions after the removals
        touched = np.concatenate([merged, merged[merged > 0] - 1])  # (<= 2K,)
        rank[touched] = pair_ranks(ids, chunk, touched, table)
    return out, counts


def leftmost_non_overlapping(at: np.ndarray) -> np.ndarray:
    """From sorted positions of one repeated pair, keep those a left-to-right scan would merge.

    In ``a a a a a`` the pair ``(a, a)`` starts at 0, 1, 2, 3; merging at 0 uses up
    position 1, so the scan merges at 0 and 2: in each run of consecutive
    positions, every second one, starting with the first.

    >>> leftmost_non_overlapping(np.array([0, 1, 2, 3, 7, 9, 10]))
    array([0, 2, 7, 9])
    """
    if len(at) < 2 or not (np.diff(at) == 1).any():
        return at  # the usual case: no two occurrences overlap
    run_start = np.r_[True, np.diff(at) != 1]  # (K,) first position of each run
    first = np.maximum.accumulate(np.where(run_start, at, 0))  # (K,) where the current run began
    return at[(at - first) % 2 == 0]
