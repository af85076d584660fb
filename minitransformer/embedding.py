"""Stage 2, embedding (concept: classification): each id becomes one learned row of ``W_E``.

The forward pass is a table lookup, ``x = W_E[ids]``. Training moves the rows of
tokens that behave alike towards each other, so the table ends up as a soft
classification of the vocabulary: a token's nearest rows (by cosine similarity)
are tokens of the same kind. `nearest` shows that.

The backward pass is the one subtle part: a token that appears several times in
the batch receives the sum of the gradients of all its positions. ``dW_E[ids] +=
dx`` would be wrong (numpy applies repeated indices once), so the sum is done by
sorting the ids and adding each run with ``np.add.reduceat``.

    >>> import numpy as np
    >>> params = {"W_E": np.arange(6, dtype=np.float32).reshape(3, 2)}
    >>> x, cache = forward(params, np.array([[2, 0, 2]]))
    >>> x[0].tolist()
    [[4.0, 5.0], [0.0, 1.0], [4.0, 5.0]]
    >>> backward(params, cache, np.ones((1, 3, 2), np.float32))[1]["W_E"].tolist()
    [[1.0, 1.0], [0.0, 0.0], [2.0, 2.0]]

Shapes: ids (B, T) int, W_E (V, C), x (B, T, C).
Deliberately left out: embedding scaling by sqrt(C) (Vaswani et al.) and
embedding dropout; GPT-2 uses neither.
"""

from __future__ import annotations

import numpy as np

from .core.nn import want_cache


def init(config, rng: np.random.Generator) -> dict:
    """``{"W_E": (V, C)}`` drawn from N(0, init_std²), float32."""
    W_E = rng.normal(0.0, config.init_std, size=(config.vocab_size, config.d_model))
    return {"W_E": W_E.astype(np.float32)}


def check_ids(ids, vocab_size: int) -> np.ndarray:
    """Return ``ids`` as a (B, T) int array, or raise a ValueError that says what is wrong."""
    ids = np.asarray(ids)
    if ids.size == 0 and ids.dtype.kind == "f":
        ids = ids.astype(np.int64)  # an empty list is float to numpy: there is no wrong value in it
    if ids.ndim == 1:
        raise ValueError(f"ids must be 2-D (batch, time); got shape {ids.shape}: wrap one sequence as ids[None, :]")
    if ids.ndim != 2:
        raise ValueError(f"ids must be 2-D (batch, time), got shape {ids.shape}")
    if ids.dtype.kind not in "iu":  # (signed or unsigned integers; cheaper than np.issubdtype, per token)
        raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        bad = ids[(ids < 0) | (ids >= vocab_size)][0]
        raise ValueError(f"token id {bad} is outside the vocabulary 0..{vocab_size - 1}; was the text encoded "
                         "with a tokenizer of a different vocab_size?")
    return ids


def forward(params: dict, ids, need_cache=None):
    """Look up the rows of ``W_E``: ids (B, T) -> x (B, T, C). Cache: ``ids`` and ``hook_embed``."""
    W_E = params["W_E"]
    ids = check_ids(ids, W_E.shape[0])
    x = np.take(W_E, ids, axis=0)  # (B, T) -> (B, T, C), a copy (note: W_E[ids] holds Python's lock, take does not)
    cache = {"ids": ids, "hook_embed": x} if want_cache(need_cache) else None
    return x, cache


def scatter_rows(ids: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """Sum ``rows[k]`` into output row ``ids[k]``: the gradient of a gather, repeated ids added up.

    Shapes: ids (N,) int, rows (N, C) -> (n, C).
    """
    order = np.argsort(ids, kind="stable")  # group equal ids together
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])  # first index of each run
    out = np.zeros((n, rows.shape[1]), dtype=rows.dtype)
    if not len(ids):
        return out
    # note: an id seen once is copied; only repeated ids are summed (`reduceat` costs a few
    # microseconds per run, and most ids of a batch are single)
    lengths = np.diff(np.r_[starts, len(ids)])  # (runs,)
    single = lengths == 1
    out[sorted_ids[starts[single]]] = rows[order[starts[single]]]
    if not single.all():
        repeated = np.repeat(~single, lengths)  # (N,) in sorted order: rows of repeated ids
        firsts = np.cumsum(np.r_[0, lengths[~single][:-1]])  # where each repeated run starts among them
        out[sorted_ids[starts[~single]]] = np.add.reduceat(rows[order[repeated]], firsts, axis=0)
    return out


def backward(params: dict, cache: dict, dx: np.ndarray):
    """Returns ``(None, {"W_E": dW_E})``: ids have no gradient."""
    W_E = params["W_E"]
    ids = cache["ids"]
    dW_E = scatter_rows(ids.reshape(-1), dx.reshape(-1, dx.shape[-1]), W_E.shape[0])  # (V, C)
    return None, {"W_E": dW_E}


def nearest(W_E: np.ndarray, token_id: int, k: int = 5) -> list[tuple[int, float]]:
    """The ``k`` tokens whose rows are most similar (cosine) to ``token_id``'s row, itself excluded.

    This is the classification the embedding learned: a token's neighbours are its class.
    """
    if not 0 <= token_id < W_E.shape[0]:
        raise ValueError(f"token id {token_id} is outside the vocabulary 0..{W_E.shape[0] - 1}")
    unit = W_E / np.maximum(np.linalg.norm(W_E, axis=1, keepdims=True), 1e-12)  # (V, C)
    sims = unit @ unit[token_id]  # (V,)
    sims[token_id] = -np.inf
    top = np.argsort(-sims, kind="stable")[:k]
    return [(int(i), float(sims[i])) for i in top]
