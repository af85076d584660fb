"""Stage 4, Multi-Head Latent Attention, the reference path: MLA from its definition.

`mla` computes MLA with fused matrices (one matmul for everything that reads x,
one for everything that reads a latent) and, when decoding, with weight
absorption. This module has neither: every head's content query q_C, content
key k_C, value v and positional query q_R is built as its own array, next to the
one positional key k_R that all heads share, and the score is the sum of the two
channels, as in DeepSeek-V2 §2.1:

    c_KV = RMSNorm(x W_DKV)                    (B, T, Dc)     the latent: what is cached
    k_C  = c_KV W_UK,   v = c_KV W_UV           (B, H, S, Dh)  every head's key and value, from the latent
    c_Q  = RMSNorm(x W_DQ)                      (B, T, Dq)     (without query compression: q = x W_Q)
    q_C  = c_Q W_UQ,    q_R = RoPE(c_Q W_QR)    (B, H, T, ·)   every head's content and positional query
    k_R  = RoPE(x W_KR)                         (B, T, Dr)     ONE positional key, shared by all heads: cached
    scores  = scale · (q_C k_C^T + q_R k_R^T)   (B, H, T, S),  scale = mult / sqrt(Dh + Dr)
    pattern = softmax(scores + mask)            mask: causal, plus the positional variant's score_bias
    z_h     = pattern_h v_h,   y = concat(z_1 .. z_H) W_O

Backward is the same lines read upwards; the two new things against `mha_reference`
are the sum of two score channels (each gets the same dscores, times the scale)
and the shared key k_R, whose gradient is the sum over all H heads that read it.
The latent c_KV feeds both k_C and v, so its gradient is the sum of both.

Same signature, same published cache names and the same `LatentKVCache` as the
naive path of `mla.forward` (``impl`` may only be None or ``"naive"`` here); the
tests hold the two equal in forward, backward and decoding.

Dimension letters: B batch, T query positions, S key positions, C model width,
H heads, Dh content query/key width (= d_head), Dv value width (= d_head), Dc
key/value latent width, Dq query latent width (0: no query compression), Dr
decoupled RoPE width.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .mha_reference import causal_mask, key_positions
from .mla import dims, init, softmax_scale  # the same parameters and sizes as the fast path
from ..core.nn import require_cache, rmsnorm_backward, rmsnorm_forward, softmax, want_cache

__all__ = ["init", "forward", "backward"]


def _heads(a: np.ndarray, H: int) -> np.ndarray:
    """(B, T, H·d) -> (B, H, T, d): the heads side by side become heads one after another."""
    B, T, Hd = a.shape
    return a.reshape(B, T, H, Hd // H).transpose(0, 2, 1, 3)


def _side_by_side(a: np.ndarray) -> np.ndarray:
    """(B, H, T, d) -> (B, T, H·d), the inverse of `_heads`."""
    B, H, T, d = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, T, H * d)


def _weight_grad(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """For out = a W: dW = a^T d, summed over batch and time: (B, T, I), (B, T, O) -> (I, O)."""
    return np.einsum("bti,bto->io", a, d)


# --------------------------------------------------------------------------- forward
def forward(params: dict, x: np.ndarray, config, positions, kv_cache=None, layer: int = 0, need_cache=None,
            record: bool = False, impl: Optional[str] = None, hook=None, positional=None):
    """MLA over ``x`` (B, T, C) at consecutive ``positions`` (T,) -> y (B, T, C), as `mla.forward`'s naive path.

    Cache: the published ``hook_latent``, ``hook_latent_q`` (with query compression), ``hook_q``,
    ``hook_rot_q``, ``hook_rot_k``, ``hook_k``, ``hook_v``, ``hook_pattern``, ``hook_z``,
    ``hook_attn_scores`` (if recorded), ``impl`` ("naive"), and ``saved`` for backward.
    """
    H, Dh, Dv, Dc, Dq, Dr = dims(config)
    if impl not in (None, "naive"):
        raise ValueError(f"the MLA reference computes MLA from its definition only (impl='naive'), got "
                         f"impl={impl!r}; use attention.mla.forward for the absorbed path")
    B, T, C = x.shape
    positions = np.asarray(positions)
    if positions.shape != (T,) or np.any(np.diff(positions) != 1):
        raise ValueError(f"positions must be the {T} consecutive positions of x (start_pos + arange(T)): the "
                         f"latent cache stores positions in order; got {positions}")
    scale = softmax_scale(config)

    def latent(name, norm_name):  # x W, then RMSNorm with its gain when the config has latent norms
        raw = x @ params[name]  # (B, T, C) -> (B, T, latent width)
        return rmsnorm_forward(raw, params[norm_name], config.norm_eps) if config.latent_norm else (raw, None)

    c_kv, kv_norm = latent("W_DKV", "kv_norm")  # (B, T, Dc)
    c_q = q_norm = None
    if Dq:
        c_q, q_norm = latent("W_DQ", "q_norm")  # (B, T, Dq)
        q_c = c_q @ params["W_UQ"]  # (B, T, Dq) @ (Dq, H·Dh) -> (B, T, H·Dh)
        q_r = c_q @ params["W_QR"] if Dr else np.zeros((B, T, 0), x.dtype)  # (B, T, H·Dr)
    else:
        q = x @ params["W_Q"]  # (B, T, C) @ (C, H·(Dh + Dr)) -> (B, T, H·(Dh + Dr)), laid out [q_C | q_R]
        q_c, q_r = q[..., :H * Dh], q[..., H * Dh:]
    q_c = _heads(q_c, H)  # (B, H, T, Dh)
    q_r = q_r.reshape(B, T, H, Dr).transpose(0, 2, 1, 3)  # (B, H, T, Dr)
    k_r = x @ params["W_KR"] if Dr else np.zeros((B, T, 0), x.dtype)  # (B, T, C) -> (B, T, Dr)
    if Dr:
        rotate = getattr(positional, "rotate", None)
        if rotate is None:
            raise ValueError(f"this config has a decoupled RoPE channel (d_rope={Dr}) but no rotation was given: "
                             "pass positional=core.registry.chosen('positional', config) (a rotary variant)")
        q_r = rotate(q_r, positions, config)  # (B, H, T, Dr)
        k_r = rotate(k_r, positions, config)  # (B, T, Dr), rotated once, then cached

    if kv_cache is not None:  # everything stored so far: the latents and the rotated shared keys
        stored = kv_cache.append(layer, c_kv, k_r)  # (B, S, Dc + Dr)
        c_all, k_r_all = stored[..., :Dc], stored[..., Dc:]  # (B, S, Dc), (B, S, Dr)
    else:
        c_all, k_r_all = c_kv, k_r
    S = c_all.shape[1]

    k_c = _heads(c_all @ params["W_UK"], H)  # (B, S, Dc) @ (Dc, H·Dh) -> (B, H, S, Dh)
    v = _heads(c_all @ params["W_UV"], H)  # (B, S, Dc) @ (Dc, H·Dv) -> (B, H, S, Dv)
    content = q_c @ k_c.transpose(0, 1, 3, 2)  # (B, H, T, Dh) @ (B, H, Dh, S) -> (B, H, T, S)
    position = q_r @ k_r_all[:, None].transpose(0, 1, 3, 2)  # (B, H, T, Dr) @ (B, 1, Dr, S) -> (B, H, T, S)
    scores = scale * (content + position)  # (B, H, T, S)

    mask = causal_mask(positions, S)  # (T, S)
    score_bias = getattr(positional, "score_bias", None)
    if score_bias is not None:  # a positional variant that biases scores by distance (e.g. ALiBi)
        mask = mask + score_bias(positions, key_positions(positions, S), config)  # + (H, T, S)
    masked = scores + mask.astype(x.dtype)  # (B, H, T, S)
    pattern = softmax(masked)  # (B, H, T, S): every row has its own key, so none is all -inf
    if hook is not None:
        pattern = hook("hook_pattern", pattern)
    z = (pattern @ v).transpose(0, 2, 1, 3)  # (B, H, T, S) @ (B, H, S, Dv) -> (B, H, T, Dv) -> (B, T, H, Dv)
    if hook is not None:
        z = hook("hook_z", z)
    z = z.reshape(B, T, H * Dv)  # concat: (B, T, H, Dv) -> (B, T, H·Dv)
    y = z @ params["W_O"]  # (B, T, H·Dv) @ (H·Dv, C) -> (B, T, C)

    if not (want_cache(need_cache) or record):
        return y, None
    cache = {"hook_latent": c_kv, "hook_q": q_c, "hook_rot_q": q_r, "hook_rot_k": k_r, "hook_k": k_c,
             "hook_v": v, "hook_pattern": pattern, "hook_z": z, "impl": "naive"}
    if Dq:
        cache["hook_latent_q"] = c_q
    if record:
        cache["hook_attn_scores"] = masked
    cache["saved"] = {"x": x, "positions": positions, "uses_kv_cache": kv_cache is not None,
                      "keys_rope": k_r_all, "kv_norm_cache": kv_norm, "q_norm_cache": q_norm,
                      "config": config, "positional": positional}
    return y, cache


# --------------------------------------------------------------------------- backward
def backward(params: dict, cache: dict, dy: np.ndarray):
    """Gradients of `forward` (without a cache), line by line from the bottom. Returns ``(dx, grads)``."""
    require_cache(cache)
    saved = cache["saved"]
    if saved["uses_kv_cache"]:
        raise ValueError("MLA backward does not support a forward that used a latent cache (inference only); "
                         "run the forward on the whole sequence without kv_cache to train")
    config, positional, x = saved["config"], saved["positional"], saved["x"]
    H, Dh, Dv, Dc, Dq, Dr = dims(config)
    scale = softmax_scale(config)
    pattern, z, v, k_c = cache["hook_pattern"], cache["hook_z"], cache["hook_v"], cache["hook_k"]
    q_c, q_r, k_r, c_kv = cache["hook_q"], cache["hook_rot_q"], saved["keys_rope"], cache["hook_latent"]
    grads = {}

    # y = z W_O
    grads["W_O"] = _weight_grad(z, dy)  # (H·Dv, C)
    dz = _heads(dy @ params["W_O"].T, H)  # (B, T, C) @ (C, H·Dv) -> (B, H, T, Dv)
    # z_h = pattern_h v_h
    dpattern = dz @ v.transpose(0, 1, 3, 2)  # (B, H, T, Dv) @ (B, H, Dv, S) -> (B, H, T, S)
    dv = pattern.transpose(0, 1, 3, 2) @ dz  # (B, H, S, T) @ (B, H, T, Dv) -> (B, H, S, Dv)
    # pattern = softmax(scores + mask)
    dscores = pattern * (dpattern - (dpattern * pattern).sum(axis=-1, keepdims=True))  # (B, H, T, S)
    # scores = scale (q_C k_C^T + q_R k_R^T): both channels receive scale · dscores
    ds = scale * dscores
    dq_c = ds @ k_c  # (B, H, T, S) @ (B, H, S, Dh) -> (B, H, T, Dh)
    dk_c = ds.transpose(0, 1, 3, 2) @ q_c  # (B, H, S, T) @ (B, H, T, Dh) -> (B, H, S, Dh)
    dq_r = ds @ k_r[:, None]  # (B, H, T, S) @ (B, 1, S, Dr) -> (B, H, T, Dr)
    dk_r = np.einsum("bhts,bhtr->bsr", ds, q_r)  # (B, S, Dr): the shared key collects from every head
    if Dr:  # back through the rotations of q_R and k_R
        unrotate = getattr(positional, "rotate_backward", None)
        if unrotate is None:
            raise ValueError("the positional variant rotates q_R and k_R but has no rotate_backward, so MLA "
                             "cannot be trained with it; register it with rotate_backward=...")
        dq_r = unrotate(dq_r, saved["positions"], config)  # (B, H, T, Dr)
        dk_r = unrotate(dk_r, saved["positions"], config)  # (B, T, Dr)

    # k_C = c_KV W_UK and v = c_KV W_UV: the latent feeds both, so its gradient is the sum
    dk_c, dv = _side_by_side(dk_c), _side_by_side(dv)  # (B, T, H·Dh), (B, T, H·Dv)
    grads["W_UK"], grads["W_UV"] = _weight_grad(c_kv, dk_c), _weight_grad(c_kv, dv)
    dc_kv = dk_c @ params["W_UK"].T + dv @ params["W_UV"].T  # (B, T, Dc)
    if saved["kv_norm_cache"] is not None:
        dc_kv, grads["kv_norm"] = rmsnorm_backward(dc_kv, saved["kv_norm_cache"])  # (B, T, Dc)
    # c_KV = x W_DKV and k_R = x W_KR (x feeds every projection: dx is the sum)
    grads["W_DKV"] = _weight_grad(x, dc_kv)
    dx = dc_kv @ params["W_DKV"].T  # (B, T, Dc) @ (Dc, C) -> (B, T, C)
    if Dr:
        grads["W_KR"] = _weight_grad(x, dk_r)
        dx += dk_r @ params["W_KR"].T  # (B, T, Dr) @ (Dr, C)

    # the queries: q_C = c_Q W_UQ, q_R = c_Q W_QR, c_Q = x W_DQ (or [q_C | q_R] = x W_Q)
    dq_c, dq_r = _side_by_side(dq_c), _side_by_side(dq_r)  # (B, T, H·Dh), (B, T, H·Dr)
    if Dq:
        c_q = cache["hook_latent_q"]  # (B, T, Dq)
        grads["W_UQ"] = _weight_grad(c_q, dq_c)
        dc_q = dq_c @ params["W_UQ"].T  # (B, T, Dq)
        if Dr:
            grads["W_QR"] = _weight_grad(c_q, dq_r)
            dc_q += dq_r @ params["W_QR"].T
        if saved["q_norm_cache"] is not None:
            dc_q, grads["q_norm"] = rmsnorm_backward(dc_q, saved["q_norm_cache"])  # (B, T, Dq)
        grads["W_DQ"] = _weight_grad(x, dc_q)
        dx += dc_q @ params["W_DQ"].T  # (B, T, Dq) @ (Dq, C)
    else:
        dq = np.concatenate([dq_c, dq_r], axis=-1)  # (B, T, H·(Dh + Dr)), the layout of W_Q's columns
        grads["W_Q"] = _weight_grad(x, dq)
        dx += dq @ params["W_Q"].T  # (B, T, H·(Dh + Dr)) @ (H·(Dh + Dr), C)
    return dx, grads
