"""Stage 5, the output: the residual stream -> logits -> probabilities -> the next token.

The output head turns each position's final vector into one score per token of
the vocabulary: ``logits = x @ W_U``, or, with ``tie_embeddings``, ``x @ W_E.T``,
so the vector that reads a token in is the one that scores it on the way out
(Press & Wolf, 2017). `probabilities` turns logits into a distribution with
temperature, top-k (Fan et al., 2018) and nucleus / top-p (Holtzman et al.,
2019) filtering, and `sample` draws the next id from it.

Deliberately left out: beam search, repetition penalties and min-p sampling.

Dimension letters: B batch, T time, C model width, V vocabulary.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..core import nn
from ..core.values import is_int, is_number


# --------------------------------------------------------------------------- the output head
def head_init(config, rng: np.random.Generator) -> dict:
    """``{"W_U": (C, V)}`` ~ N(0, init_std) float32, or ``{}`` when the head is tied to ``W_E``."""
    if config.tie_embeddings:
        return {}
    return {"W_U": rng.standard_normal((config.d_model, config.vocab_size), dtype=np.float32) * float(config.init_std)}


def head_forward(params: dict, x: np.ndarray, W_E: Optional[np.ndarray] = None, need_cache: Optional[bool] = None):
    """Logits ``x @ W_U`` (untied) or ``x @ W_E.T`` (tied): ``x (B, T, C) -> (B, T, V)``.

    A tied head has no parameters of its own; the model passes the embedding ``W_E (V, C)``,
    so the vector that reads a token in is the one that scores it on the way out.
    """
    W = _head_weight(params, W_E)  # (C, V)
    if x.shape[-1] != W.shape[0]:
        raise ValueError(f"x has width {x.shape[-1]} on its last axis, but the head expects d_model={W.shape[0]}")
    logits, _ = nn.linear_forward(x, W)  # (B, T, C) @ (C, V) -> (B, T, V)
    return logits, ({"x": x} if nn.want_cache(need_cache) else None)


def head_backward(params: dict, cache: dict, dlogits: np.ndarray, W_E: Optional[np.ndarray] = None):
    """Backward of `head_forward`. Returns ``(dx (B, T, C), grads)``.

    Untied: ``grads = {"W_U": (C, V)}``. Tied: ``grads = {"W_E": (V, C)}``, the head's share
    of the embedding gradient, which the model adds to what the embedding's own backward
    returns (a tied weight gets the sum of the gradients of both its uses).
    """
    nn.require_cache(cache)
    dx, dW, _ = nn.linear_backward(dlogits, cache["x"], _head_weight(params, W_E))  # (B, T, V) -> (B, T, C)
    return dx, ({"W_U": dW} if "W_U" in params else {"W_E": dW.T})  # dW (C, V); tied: .T -> (V, C)


def _head_weight(params: dict, W_E: Optional[np.ndarray]) -> np.ndarray:
    if "W_U" in params:
        if W_E is not None:
            raise ValueError("this head is untied (it has its own W_U); pass W_E only when config.tie_embeddings is True")
        return params["W_U"]
    if W_E is None:
        raise ValueError("this head is tied to the embedding (no W_U): pass W_E=<the embedding's W_E (V, C)>")
    return W_E.T  # (V, C) -> (C, V), a view


# --------------------------------------------------------------------------- logits -> next token
def probabilities(logits: np.ndarray, temperature: float = 1.0, top_k: Optional[int] = None,
                  top_p: Optional[float] = None) -> np.ndarray:
    """The distribution `sample` draws from: ``logits (..., V) -> probs (..., V)``, same dtype.

    In order: divide by ``temperature`` (0 means greedy: all mass on the argmax), keep the
    ``top_k`` largest logits, softmax, keep the smallest set of tokens whose mass reaches
    ``top_p`` (always at least the top one), renormalise.

    >>> logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    >>> probabilities(logits, top_k=2).round(3)
    array([[0.625, 0.375, 0.   , 0.   ]])
    >>> probabilities(logits, top_p=0.85).round(3)
    array([[0.526, 0.316, 0.158, 0.   ]])
    """
    logits = np.asarray(logits)
    if logits.ndim == 0 or not np.issubdtype(logits.dtype, np.floating):
        raise ValueError(f"logits must be a float array (..., V), got dtype {logits.dtype} and shape {logits.shape}")
    V = logits.shape[-1]
    _check_sampling_args(V, temperature, top_k, top_p)
    if temperature == 0:
        # greedy; top-k and top-p always keep the top token, so they change nothing here
        probs = np.zeros_like(logits)  # (..., V)
        np.put_along_axis(probs, logits.argmax(axis=-1)[..., None], 1.0, axis=-1)
        return probs
    # note: float64 inside (a (B, V) array, tiny next to the model), and the max is subtracted
    # before dividing, so a tiny temperature gives -inf and 0, never inf - inf = nan.
    z = np.asarray(logits, np.float64)
    z = (z - z.max(axis=-1, keepdims=True)) / float(temperature)  # (..., V)
    if top_k is not None:
        kth = np.partition(z, V - top_k, axis=-1)[..., V - top_k, None]  # k-th largest, (..., 1)
        z = np.where(z < kth, -np.inf, z)  # note: ties with the k-th value are all kept
    probs = nn.softmax(z)  # (..., V)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")  # most likely first, (..., V)
        p_sorted = np.take_along_axis(probs, order, axis=-1)
        # keep a token if the mass before it has not yet reached top_p: the top token
        # (mass 0 before it) always stays, and so does the one that crosses top_p
        keep_sorted = (np.cumsum(p_sorted, axis=-1) - p_sorted) < top_p  # (..., V)
        keep = np.empty_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)  # back to vocabulary order
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum(axis=-1, keepdims=True)
    return probs.astype(logits.dtype, copy=False)


def sample(logits: np.ndarray, rng: Optional[np.random.Generator], temperature: float = 1.0,
           top_k: Optional[int] = None, top_p: Optional[float] = None) -> np.ndarray:
    """Draw the next id of each row: ``logits (B, V) -> ids (B,) int64``.

    Draws from `probabilities` with the explicit generator ``rng`` (same seed, same ids);
    ``temperature=0`` is greedy and needs no generator.

    >>> sample(np.array([[0.1, 2.0, 0.3]], np.float32), rng=None, temperature=0)
    array([1])
    """
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"sample expects logits of shape (B, V), got {logits.shape}; "
                         "for a (B, T, V) model output pass the last position, logits[:, -1, :]")
    if temperature == 0 and logits.dtype.kind == "f":  # greedy: the id `probabilities` gives all mass
        _check_sampling_args(logits.shape[-1], temperature, top_k, top_p)
        return logits.argmax(axis=-1).astype(np.int64)  # (B, V) -> (B,)
    probs = probabilities(logits, temperature, top_k, top_p)  # (B, V)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"sampling with temperature={temperature} needs rng=np.random.default_rng(seed), got {rng!r}")
    # inverse CDF, all rows at once: the id is the number of cumulative masses <= u.
    # subtle: `<=` (not `<`) so a token of probability 0 can never be chosen, even for u = 0
    cdf = np.cumsum(probs, axis=-1, dtype=np.float64)  # (B, V)
    u = rng.random((len(cdf), 1)) * cdf[:, -1:]  # (B, 1), scaled by the total in case of rounding
    return (cdf <= u).sum(axis=-1).astype(np.int64)  # (B, V) -> (B,)


def _check_sampling_args(V: int, temperature, top_k, top_p) -> None:
    def number(v) -> bool:
        return is_number(v) and math.isfinite(v)

    if not number(temperature) or temperature < 0:
        raise ValueError(f"temperature={temperature!r} must be a finite number >= 0 (0 means greedy)")
    if top_k is not None and (not is_int(top_k) or not 1 <= top_k <= V):
        raise ValueError(f"top_k={top_k!r} must be an int in 1..{V} (the vocabulary size), or None to keep all")
    if top_p is not None and (not number(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p={top_p!r} must be a number in (0, 1], or None to keep all")
