"""Head detectors: which heads attend where a known mechanism would (Olsson et al., 2022).

Each score is the mean attention mass a head puts on a set of *target* keys, averaged
over the queries that have a target, and over the batch. A head that always attends
exactly to its targets scores 1; one that never does scores 0.

- previous token: the target of query t is key t - 1 (queries t >= 1).
- duplicate token: the targets of query t are the earlier keys s < t holding the same
  token, ``ids[s] == ids[t]``.
- induction: the targets of query t are the keys s + 1 that *followed* an earlier copy
  of the current token, ``ids[s] == ids[t]`` with s + 1 < t. On a repeated random
  sequence ``[r, r]`` this is the key one after the current token's first occurrence:
  the head that looks there can copy what came next last time.
- attention sink: the mass on key 0 (queries t >= 1; query 0 can only attend to itself).
  Many trained heads park attention on the first token when they have nothing to do
  (Xiao et al., 2023, "attention sinks").

note: TransformerLens' head detector averages over *all* query rows (rows without a target
count as 0), so its induction score on ``[r, r]`` is at most about one half; here rows
without a target are left out, so the best score is 1.

Dimension letters: B batch, H heads, T query positions, S key positions (S = T), L layers.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..trace import run_with_cache
from .inputs import check_ids


def _check(pattern: np.ndarray, ids: Optional[np.ndarray] = None):
    pattern = np.asarray(pattern)
    if pattern.ndim != 4 or pattern.shape[-1] != pattern.shape[-2]:
        raise ValueError(f"pattern must be (B, H, T, T), one layer's hook_pattern; got shape {pattern.shape}")
    if ids is not None:
        ids = check_ids(ids)
        if ids.shape != (pattern.shape[0], pattern.shape[-1]):
            raise ValueError(f"ids must be (B, T) = {(pattern.shape[0], pattern.shape[-1])}, got {ids.shape}")
    return pattern, ids


def score_on_targets(pattern: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean attention mass on ``targets`` (B, T, T) bool per head: (H,), over queries that have a target.

    NaN for a head if no query in the batch has a target.
    """
    pattern, _ = _check(pattern)
    targets = np.asarray(targets, bool)
    mass = (pattern * targets[:, None]).sum(axis=-1)  # (B, H, T, T) -> (B, H, T)
    has = targets.any(axis=-1)  # (B, T): queries with at least one target
    n = has.sum()
    if n == 0:
        return np.full(pattern.shape[1], np.nan)
    return (mass * has[:, None]).sum(axis=(0, 2)) / n  # (H,)


def previous_token_targets(B: int, T: int) -> np.ndarray:
    """(B, T, T) bool: query t targets key t - 1."""
    return np.broadcast_to(np.eye(T, k=-1, dtype=bool), (B, T, T))


def duplicate_token_targets(ids: np.ndarray) -> np.ndarray:
    """(B, T, T) bool: query t targets earlier keys s < t with the same token."""
    ids = check_ids(ids)
    same = ids[:, :, None] == ids[:, None, :]  # (B, T, S)
    return same & np.tri(ids.shape[1], k=-1, dtype=bool)  # strictly earlier keys


def induction_targets(ids: np.ndarray) -> np.ndarray:
    """(B, T, T) bool: query t targets key s + 1 where ids[s] == ids[t] and s + 1 < t."""
    dup = duplicate_token_targets(ids)  # (B, T, S): s < t with ids[s] == ids[t]
    shifted = np.zeros_like(dup)
    shifted[:, :, 1:] = dup[:, :, :-1]  # key s + 1 for each duplicate key s
    return shifted & np.tri(dup.shape[1], k=-1, dtype=bool)  # keep s + 1 < t


def previous_token_score(pattern: np.ndarray) -> np.ndarray:
    """(H,): mean attention from each query to the key just before it."""
    pattern, _ = _check(pattern)
    B, _, T, _ = pattern.shape
    return score_on_targets(pattern, previous_token_targets(B, T))


def duplicate_token_score(pattern: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(H,): mean attention to earlier copies of the current token."""
    pattern, ids = _check(pattern, ids)
    return score_on_targets(pattern, duplicate_token_targets(ids))


def induction_score(pattern: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(H,): mean attention to the token after an earlier copy of the current token."""
    pattern, ids = _check(pattern, ids)
    return score_on_targets(pattern, induction_targets(ids))


def attention_sink_score(pattern: np.ndarray) -> np.ndarray:
    """(H,): mean attention to key 0 from queries t >= 1."""
    pattern, _ = _check(pattern)
    B, _, T, _ = pattern.shape
    targets = np.zeros((B, T, T), bool)
    targets[:, 1:, 0] = True
    return score_on_targets(pattern, targets)


def repeated_random_tokens(rng: np.random.Generator, batch: int, half: int, vocab: int,
                           first: Optional[int] = None) -> np.ndarray:
    """(batch, 2·half) ids: ``half`` random tokens, then the same ones again (``first``: a fixed id prepended).

    Tokens within a half are distinct when the vocabulary allows, so each token's earlier copy is unique.
    """
    if half < 2 or vocab < 2:
        raise ValueError(f"need half >= 2 and vocab >= 2, got half={half}, vocab={vocab}")
    if half <= vocab:
        r = np.stack([rng.permutation(vocab)[:half] for _ in range(batch)])  # (batch, half), distinct per row
    else:
        r = rng.integers(0, vocab, (batch, half))
    ids = np.concatenate([r, r], axis=1)  # (batch, 2 * half)
    if first is not None:
        ids = np.concatenate([np.full((batch, 1), first), ids], axis=1)
    return ids.astype(np.int64)


def head_scores(model, ids) -> dict:
    """Every detector for every head of ``model`` on ``ids`` (B, T): ``{name: (L, H)}``.

    Names: ``previous_token``, ``duplicate_token``, ``induction``, ``attention_sink``. Run it on
    `repeated_random_tokens` to find induction heads.
    """
    ids = check_ids(ids)
    _, cache = run_with_cache(model, ids, names_filter=lambda n: n.endswith("hook_pattern"))
    out: dict = {k: [] for k in ("previous_token", "duplicate_token", "induction", "attention_sink")}
    for layer in range(model.config.n_layers):
        p = cache[f"blocks.{layer}.attn.hook_pattern"]  # (B, H, T, T)
        out["previous_token"].append(previous_token_score(p))
        out["duplicate_token"].append(duplicate_token_score(p, ids))
        out["induction"].append(induction_score(p, ids))
        out["attention_sink"].append(attention_sink_score(p))
    return {k: np.stack(v) for k, v in out.items()}
