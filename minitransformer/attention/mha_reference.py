"""Stage 4, attention, the reference path: the equations of `mha`, one line each.

This is multi-head attention as it is written on the board. `mha` computes the
same thing with tricks for speed (q, k and v from one fused matmul, the softmax
done in place, grouped heads folded into one product, FlashAttention's row-sum
identity in backward); this module has none of them, and the tests hold the two
equal in forward and backward. Read this one first.

For every query head h, reading key/value head g = h // R:

    q, k, v = x W_Q, x W_K, x W_V            the question, the label, the content
    scores  = q_h k_g^T / sqrt(D)            how well each key answers each query
    mask    = causal + padding + score_bias  -inf where a query may not look
    pattern = softmax(scores + mask)         a soft lookup over the keys
    z_h     = pattern_h v_g                  what head h retrieved
    y       = concat(z_1 .. z_H) W_O         the heads' findings, mixed back into the stream

and backward, the same lines read from the bottom up (the chain rule, one product
at a time; for a product P = A B, dA = dP B^T and dB = A^T dP):

    dz        = dy W_O^T,                     dW_O = concat(z)^T dy
    dpattern  = dz_h v_g^T,                   dv_g += pattern_h^T dz_h
    dscores   = pattern * (dpattern - sum_keys(dpattern * pattern))     the softmax backward
    dq_h      = dscores k_g / sqrt(D),        dk_g += dscores^T q_h / sqrt(D)
    dW_Q      = x^T dq,  dW_K = x^T dk,  dW_V = x^T dv,   dx = dq W_Q^T + dk W_K^T + dv W_V^T

The mask is a matrix here, built in full and added: -inf on the future (the key's
position is after the query's), on padding keys, plus the positional variant's
``score_bias`` (ALiBi) where it offers one. RoPE, when the positional variant
offers ``rotate``, turns q and k to their positions before the scores.

Grouped- and multi-query attention (G < H key/value heads) are the same lines
with g = h // R: each key head is read by R query heads, so its gradient is the
sum of theirs. Here every query head gets its own copy of its key and value
(``k[:, kv_head]``), which is exactly what the fast path avoids.

Same signature, same published cache names (``hook_q``, ``hook_pattern``, ...),
same KV cache as `mha.forward`, so the model runs on either
(``ModelConfig(attention_impl="reference")``).

Dimension letters: B batch, T query positions, S key positions (T, or the cache
length when decoding), C model width, H query heads, G key/value heads,
R = H/G query heads per key/value head, D head width.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .mha import init  # the same parameters: W_Q, W_K, W_V, W_O (and biases)
from ..core.nn import require_cache, want_cache

__all__ = ["init", "forward", "backward", "causal_mask", "key_positions"]


def key_positions(query_positions: np.ndarray, S: int) -> np.ndarray:
    """The absolute positions (S,) of the S keys: the consecutive positions ending at the last
    query's (everything in the KV cache, from 0, or the queries' own positions without one)."""
    return np.arange(S) + (np.asarray(query_positions)[-1] + 1 - S)


def causal_mask(query_positions: np.ndarray, S: int) -> np.ndarray:
    """The (T, S) causal mask: 0 where the query may read the key, -inf where the key is in its future.

    The keys stand at `key_positions`.

        >>> causal_mask(np.arange(3), 3)
        array([[  0., -inf, -inf],
               [  0.,   0., -inf],
               [  0.,   0.,   0.]])
    """
    future = key_positions(query_positions, S)[None, :] > np.asarray(query_positions)[:, None]  # (T, S) bool
    return np.where(future, -np.inf, 0.0)  # (T, S)


def _heads(a: np.ndarray, n: int) -> np.ndarray:
    """(B, T, n·D) -> (B, n, T, D): the heads side by side become heads one after another."""
    B, T, _ = a.shape
    return a.reshape(B, T, n, -1).transpose(0, 2, 1, 3)


# --------------------------------------------------------------------------- forward
def forward(params: dict, x: np.ndarray, config, positions: np.ndarray, kv_cache=None, layer: int = 0,
            padding_mask: Optional[np.ndarray] = None, need_cache=None, record: bool = False, hook=None,
            positional=None):
    """Causal self-attention over ``x`` (B, T, C) -> y (B, T, C), as in `mha.forward` (same arguments).

    Cache: the published activations ``hook_q``, ``hook_k``, ``hook_v`` (B, heads, T, D),
    ``hook_rot_q``/``hook_rot_k`` when rotated, ``hook_pattern`` (B, H, T, S), ``hook_z``
    (B, T, H·D), ``hook_attn_scores`` if recorded; and ``saved``, what only backward reads.
    """
    B, T, C = x.shape
    H, G, D = config.n_heads, config.kv_heads, config.d_head
    R = H // G
    b = {name: params.get(name, 0.0) for name in ("b_Q", "b_K", "b_V", "b_O")}  # no biases: add 0
    q = _heads(x @ params["W_Q"] + b["b_Q"], H)  # (B, T, C) @ (C, H·D) -> (B, H, T, D)
    k = _heads(x @ params["W_K"] + b["b_K"], G)  # (B, T, C) @ (C, G·D) -> (B, G, T, D)
    v = _heads(x @ params["W_V"] + b["b_V"], G)  # -> (B, G, T, D)
    q_rot, k_rot = q, k
    rotate = getattr(positional, "rotate", None)
    if rotate is not None:  # RoPE: q and k turned to their positions, k before it is cached
        q_rot = rotate(q, positions, config)  # (B, H, T, D)
        k_rot = rotate(k, positions, config)  # (B, G, T, D)
    if kv_cache is not None:  # every key and value stored so far, this call's included
        k_all, v_all = kv_cache.append(layer, k_rot, v)  # (B, G, S, D)
    else:
        k_all, v_all = k_rot, v  # (B, G, T, D), S = T
    S = k_all.shape[2]

    # query head h reads key/value head h // R: give every query head its own copy
    kv_head = np.arange(H) // R  # (H,)
    k_h, v_h = k_all[:, kv_head], v_all[:, kv_head]  # (B, G, S, D) -> (B, H, S, D)

    mask = causal_mask(positions, S)[None, None]  # (1, 1, T, S)
    if padding_mask is not None:  # no query reads a padding key
        mask = mask + np.where(_check_padding(padding_mask, B, S), 0.0, -np.inf)[:, None, None, :]  # (B, 1, T, S)
    score_bias = getattr(positional, "score_bias", None)
    if score_bias is not None:  # e.g. ALiBi: a penalty that grows with the distance
        mask = mask + score_bias(np.asarray(positions), key_positions(positions, S), config)  # + (H, T, S)
    mask = mask.astype(x.dtype)

    scores = q_rot @ k_h.transpose(0, 1, 3, 2) / math.sqrt(D)  # (B, H, T, D) @ (B, H, D, S) -> (B, H, T, S)
    pattern = _softmax(scores + mask)  # (B, H, T, S)
    if hook is not None:
        pattern = hook("hook_pattern", pattern)

    z = pattern @ v_h  # (B, H, T, S) @ (B, H, S, D) -> (B, H, T, D)
    z = z.transpose(0, 2, 1, 3)  # -> (B, T, H, D)
    if hook is not None:
        z = hook("hook_z", z)
    z = z.reshape(B, T, H * D)  # concat: (B, T, H, D) -> (B, T, H·D)
    y = z @ params["W_O"] + b["b_O"]  # (B, T, H·D) @ (H·D, C) -> (B, T, C)

    if not (want_cache(need_cache) or record):
        return y, None
    cache = {"hook_q": q, "hook_k": k, "hook_v": v, "hook_pattern": pattern, "hook_z": z}
    if rotate is not None:
        cache.update(hook_rot_q=q_rot, hook_rot_k=k_rot)
    if record:
        cache["hook_attn_scores"] = scores + mask
    cache["saved"] = {"x": x, "positions": np.asarray(positions), "rotated_queries": q_rot,
                      "keys_per_head": k_h, "values_per_head": v_h, "uses_kv_cache": kv_cache is not None,
                      "config": config, "positional": positional}
    return y, cache


def _softmax(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (the keys); a row that is all -inf (only padding keys) becomes 0."""
    with np.errstate(invalid="ignore"):
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))  # subtracting the row max changes nothing
        pattern = e / e.sum(axis=-1, keepdims=True)
    return np.nan_to_num(pattern, nan=0.0)  # such a query retrieves nothing


def _check_padding(padding_mask, B: int, S: int) -> np.ndarray:
    padding_mask = np.asarray(padding_mask)
    if padding_mask.shape != (B, S) or padding_mask.dtype != bool:
        raise ValueError(f"padding_mask must be a bool array of shape (batch, keys) = ({B}, {S}), "
                         f"got {padding_mask.dtype} {padding_mask.shape}")
    return padding_mask


# --------------------------------------------------------------------------- backward
def backward(params: dict, cache: dict, dy: np.ndarray):
    """Gradients of `forward` (without a KV cache), the equations of the module docstring read upwards.

    Returns ``(dx (B, T, C), grads)`` with the keys of ``params``.
    """
    require_cache(cache)
    saved = cache["saved"]
    if saved["uses_kv_cache"]:
        raise ValueError("attention backward does not support a forward that used a KV cache (inference only); "
                         "run the forward on the whole sequence without kv_cache to train")
    config, positional, x = saved["config"], saved["positional"], saved["x"]
    q_rot, k_h, v_h = saved["rotated_queries"], saved["keys_per_head"], saved["values_per_head"]
    pattern, z = cache["hook_pattern"], cache["hook_z"]  # (B, H, T, S), (B, T, H·D)
    B, T, C = x.shape
    H, G, D = config.n_heads, config.kv_heads, config.d_head
    R = H // G
    grads = {}

    # y = z W_O + b_O
    grads["W_O"] = np.einsum("btj,btc->jc", z, dy)  # z^T dy: (H·D, C)
    dz = _heads(dy @ params["W_O"].T, H)  # (B, T, C) @ (C, H·D) -> (B, H, T, D)
    # z_h = pattern_h v_h
    dpattern = dz @ v_h.transpose(0, 1, 3, 2)  # (B, H, T, D) @ (B, H, D, S) -> (B, H, T, S)
    dv_h = pattern.transpose(0, 1, 3, 2) @ dz  # (B, H, S, T) @ (B, H, T, D) -> (B, H, S, D)
    # pattern = softmax(scores + mask); the mask is a constant, so dscores = d(scores + mask)
    dscores = pattern * (dpattern - (dpattern * pattern).sum(axis=-1, keepdims=True))  # (B, H, T, S)
    # scores = q k_h^T / sqrt(D)
    dq_rot = dscores @ k_h / math.sqrt(D)  # (B, H, T, S) @ (B, H, S, D) -> (B, H, T, D)
    dk_h = dscores.transpose(0, 1, 3, 2) @ q_rot / math.sqrt(D)  # (B, H, S, T) @ (B, H, T, D) -> (B, H, S, D)

    # each key/value head was read by R query heads: its gradient is the sum of theirs
    dk_rot = np.zeros((B, G, T, D), dtype=dk_h.dtype)  # (B, G, S, D), S = T
    dv = np.zeros((B, G, T, D), dtype=dv_h.dtype)
    for h in range(H):
        dk_rot[:, h // R] += dk_h[:, h]
        dv[:, h // R] += dv_h[:, h]
    dq, dk = dq_rot, dk_rot
    if getattr(positional, "rotate", None) is not None:  # back through the rotation of q and k
        unrotate = getattr(positional, "rotate_backward", None)
        if unrotate is None:
            raise ValueError(f"the positional variant {getattr(positional, 'name', positional)!r} rotates q and k "
                             "but has no rotate_backward, so attention cannot be trained with it; register it "
                             "with rotate_backward=...")
        dq = unrotate(dq_rot, saved["positions"], config)  # (B, H, T, D)
        dk = unrotate(dk_rot, saved["positions"], config)  # (B, G, T, D)

    # q = x W_Q + b_Q, and the same for k and v: x feeds all three, so dx is the sum
    dx = np.zeros_like(x)
    for name, d in (("Q", dq), ("K", dk), ("V", dv)):
        d = d.transpose(0, 2, 1, 3).reshape(B, T, -1)  # (B, heads, T, D) -> (B, T, heads·D)
        grads["W_" + name] = np.einsum("btc,btj->cj", x, d)  # x^T d: (C, heads·D)
        dx += d @ params["W_" + name].T  # (B, T, heads·D) @ (heads·D, C) -> (B, T, C)
        if "b_" + name in params:
            grads["b_" + name] = d.sum(axis=(0, 1))  # (heads·D,)
    if "b_O" in params:
        grads["b_O"] = dy.sum(axis=(0, 1))  # (C,)
    return dx, grads
