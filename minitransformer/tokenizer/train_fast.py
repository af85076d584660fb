"""The fast BPE trainer: the same merges as `train_reference`, without recounting.

Four ideas make it fast, each independent of the others:

1. Deduplicate: a corpus of ~100k chunks has only a few thousand distinct ones.
   Train on the distinct chunks ("words"), each weighted by how often it occurs.
2. Count incrementally: merging pair (a, b) only changes the counts of pairs
   that touch an occurrence of (a, b). Subtract those, add the new ones.
3. Index: ``where[pair]`` is the set of words that may contain ``pair``, so a
   merge visits only those words, not the whole corpus.
4. Priority queue: a heap of ``(-count, first_position, pair)`` gives the best
   pair in O(log n). Entries are never updated in place; a changed pair gets a
   new entry and stale ones are skipped when they reach the top ("lazy deletion").

The tie rule (earliest first occurrence in the current sequence wins) needs the
position of each pair's first occurrence. A position is ``(word, byte offset)``:
words are numbered in order of first appearance in the text, and a token's byte
offset inside its word never changes when merges glue tokens together. Adding an
occurrence can only move a pair's first position earlier (a cheap ``min``);
removing one can only move it later, so after a removal the stored position is
kept as a lower bound and marked dirty, and recomputed only if the pair reaches
the top of the heap.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import Optional

from .bpe import (
    Pair,
    ProgressCallback,
    TrainProgress,
    TrainResult,
    check_train_args,
    encode_chunks_utf8,
    report,
)
from .patterns import compile_pattern, resolve_pattern, split_compiled


def train_fast(
    text: str, vocab_size: int, pattern: str = "gpt4", callback: Optional[ProgressCallback] = None
) -> TrainResult:
    """Learn the same merges as `train_reference`, incrementally. Same arguments and result.

    >>> train_fast("aaabdaaabac", 259, pattern=r"[\\s\\S]+").merges
    [(97, 97), (256, 97), (257, 98)]
    """
    num_merges = check_train_args(text, vocab_size)
    chunk_counts = Counter(split_compiled(text, compile_pattern(resolve_pattern(pattern))))
    # note: Counter keeps first-appearance order, so word u first appears before word u + 1.
    words = [list(b) for b in encode_chunks_utf8(chunk_counts)]  # distinct chunks as byte lists
    freq = list(chunk_counts.values())  # how often each word occurs in the text
    stride = max((len(w) for w in words), default=0) + 1  # position key = word * stride + byte offset
    tok_len = [1] * 256  # byte length of every token, to compute byte offsets

    counts: dict[Pair, int] = {}  # pair -> occurrences in the current sequence
    first: dict[Pair, int] = {}  # pair -> position key of its first occurrence (a lower bound if dirty)
    dirty: set[Pair] = set()  # pairs that lost occurrences since `first` was exact
    where: dict[Pair, set[int]] = {}  # pair -> words that may contain it (a superset)
    for u, w in enumerate(words):
        for i, pair in enumerate(zip(w, w[1:])):
            counts[pair] = counts.get(pair, 0) + freq[u]
            if pair not in first:
                first[pair] = u * stride + i  # all tokens are single bytes: offset == index
                where[pair] = set()
            where[pair].add(u)
    heap = [(-c, first[p], p) for p, c in counts.items()]
    heapq.heapify(heap)

    def exact_first(pair: Pair) -> int:
        """Scan the candidate words in order for the first real occurrence of ``pair``."""
        a, b = pair
        for u in sorted(where[pair]):
            w, offset = words[u], 0
            for i in range(len(w) - 1):
                if w[i] == a and w[i + 1] == b:
                    return u * stride + offset
                offset += tok_len[w[i]]
            where[pair].discard(u)  # prune: the pair left this word
        raise AssertionError(f"pair {pair} has a positive count but no occurrence")

    result = TrainResult(merges=[], requested=num_merges)
    for step in range(num_merges):
        # 1. Pop until the top entry is current: right count, right position, position exact.
        best = None
        while heap:
            neg_count, key, pair = heap[0]
            if counts.get(pair, 0) != -neg_count or first[pair] != key:
                heapq.heappop(heap)  # stale entry: a newer one was pushed
                continue
            if pair in dirty:
                dirty.discard(pair)
                exact = exact_first(pair)
                if exact != key:  # moved later: re-queue with the exact position
                    first[pair] = exact
                    heapq.heapreplace(heap, (neg_count, exact, pair))
                    continue
            best = pair
            break
        if best is None:
            result.reason = "no pairs left"
            break
        a, b = best
        new_id = 256 + step
        best_count = counts[best]
        tok_len.append(tok_len[a] + tok_len[b])

        # 2. Rewrite the words that contain the pair; collect the count changes.
        delta: dict[Pair, int] = {}
        added_first: dict[Pair, int] = {}
        for u in where.pop(best):
            w = words[u]
            n = len(w)
            hits = [i for i in range(n - 1) if w[i] == a and w[i + 1] == b]
            if not hits:
                continue  # the index was a superset
            f = freq[u]
            new, touched, i = [], set(), 0
            for i_hit in hits:
                if i_hit < i:
                    continue  # overlapping run (a == b): already consumed by the previous merge
                new.extend(w[i:i_hit])
                new.append(new_id)
                touched.update((i_hit - 1, i_hit, i_hit + 1))  # old pairs starting here are gone
                i = i_hit + 2
            new.extend(w[i:])
            for k in touched:  # removed pairs: those overlapping a merged occurrence
                if 0 <= k < n - 1:
                    pair = (w[k], w[k + 1])
                    delta[pair] = delta.get(pair, 0) - f
            offset = 0
            for j in range(len(new) - 1):  # added pairs: exactly those that involve the new token
                left, right = new[j], new[j + 1]
                if left == new_id or right == new_id:
                    pair = (left, right)
                    delta[pair] = delta.get(pair, 0) + f
                    key = u * stride + offset
                    if key < added_first.get(pair, key + 1):
                        added_first[pair] = key
                    where.setdefault(pair, set()).add(u)
                offset += tok_len[left]
            words[u] = new

        # 3. Apply the changes and queue a fresh heap entry for every changed pair.
        for pair, d in delta.items():
            c = counts.get(pair, 0) + d
            if pair in added_first:  # a brand-new pair (it contains new_id): position is exact
                first[pair] = added_first[pair]
            elif d:
                dirty.add(pair)  # it lost occurrences: `first` is now only a lower bound
            if c > 0:
                counts[pair] = c
                heapq.heappush(heap, (-c, first[pair], pair))
            else:
                counts.pop(pair, None)
                first.pop(pair, None)
                dirty.discard(pair)
                where.pop(pair, None)

        result.merges.append(best)
        result.counts.append(best_count)
        if report(callback, TrainProgress(step + 1, num_merges, best, new_id, best_count)):
            result.reason = "callback"
            break
    return result
