"""Stage 4, attention (concept: retrieval): queries match keys and retrieve values.

Each position asks a question (its query), compares it with the labels of the
positions before it (their keys), and takes a weighted mix of what they hold
(their values); the weights are the ``pattern``, a soft lookup over the keys:

    scores  = q @ k.T / sqrt(D)          how well each key answers each query
    pattern = softmax(scores + mask)     causal: a position never sees the future
    z       = pattern @ v                what each position retrieved
    y       = z @ W_O                    the heads' findings, mixed back into the stream

These four lines are written out, one line of code each, in `mha_reference`
(per head, with the mask as an explicit matrix, and backward as formulas). This
module is the fast path: it computes the same numbers with the tricks below,
and tests/test_reference_paths.py holds it equal to the reference in forward,
backward and KV-cache decoding. Where the four lines are here:

- scores: ``qg @ kT`` (q, k and v come from one fused matmul, the scale is
  applied to q, and the R query heads of a group are one product);
- mask: ``mask`` (causal, plus padding) and ``score_bias``, added in place;
- pattern: the in-place softmax (``scores`` becomes ``pattern``);
- z and y: ``pattern @ v_all`` per group, then ``linear_forward(z, W_O)``.

When nothing needs the whole pattern (no padding, score bias, hook or
recording; inference, or training inside `nn.lean_caches` as `GPT.loss` does),
`blockwise.attend` runs the first four lines tile by tile: a few (batch, group)
slabs and a band of query rows at a time, so each tile's scores stay in the L2
cache, and the tiles above the causal diagonal, all masked, are never computed.
The (B, H, T, S) pattern is never kept: `backward` recomputes it tile by tile
with the same operations (FlashAttention's recomputation, Dao et al., 2022),
which keeps a (B, H, T, T) array per layer out of training memory. Otherwise a
cache holds ``hook_pattern``.

In `backward`, the softmax backward uses FlashAttention's identity
rowsum(dpattern * pattern) = rowsum(dz * z), and q, k, v get their gradients
through the one fused matrix.

Variants (Vaswani et al., 2017; Shazeer, 2019; Ainslie et al., 2023):

- multi-head (MHA): every query head has its own key/value head (G = H);
- grouped-query (GQA): G < H key/value heads, each serving H/G query heads;
- multi-query (MQA): one key/value head for all (G = 1).

The KV cache is the stored index of the retrieval: keys and values of past
positions are kept, so a new token costs one query against T cached keys, O(T)
instead of recomputing all T² scores.

Attention asks the positional stage for what it offers (``positional=``, the
chosen positional variant), never for a variant by name: its ``rotate`` turns q
and k to their absolute positions before k enters the cache (RoPE), its
``score_bias`` is added to the scores (ALiBi).

Dimension letters: B batch, T query positions, S key positions (T, or the cache
length when decoding), C model width, H query heads, G key/value heads,
R = H/G query heads per group, D head width.

note: the grouping trick. Query head h uses key/value head h // R. Reshaping q
from (B, H, T, D) to (B, G, R·T, D) puts the R heads of a group one after the
other, so one matmul per group against its (B, G, S, D) keys serves them all,
and keys are never copied R times. With G = H this is plain multi-head attention.

Deliberately left out: attention dropout and sliding windows (exercises), and
Multi-Head Latent Attention, which has its own module (`mla`).
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import numpy as np

from . import blockwise
from .kv_cache import KVCache
from ..core.nn import lean, linear_backward, linear_forward, require_cache, want_cache


# --------------------------------------------------------------------------- parameters
def init(config, rng: np.random.Generator) -> dict:
    """``W_Q`` (C, H·D), ``W_K`` and ``W_V`` (C, G·D), ``W_O`` (H·D, C), biases if ``config.bias``.

    W_O is scaled by 1/sqrt(2·n_layers), GPT-2's init for projections into the
    residual stream (each block adds two of them, and the sum should not grow with depth).
    """
    C, H, G, D = config.d_model, config.n_heads, config.kv_heads, config.d_head
    std = config.init_std
    params = {
        "W_Q": rng.normal(0.0, std, (C, H * D)),
        "W_K": rng.normal(0.0, std, (C, G * D)),
        "W_V": rng.normal(0.0, std, (C, G * D)),
        "W_O": rng.normal(0.0, std / math.sqrt(2 * config.n_layers), (H * D, C)),
    }
    if config.bias:
        params.update(b_Q=np.zeros(H * D), b_K=np.zeros(G * D), b_V=np.zeros(G * D), b_O=np.zeros(C))
    return {k: v.astype(np.float32) for k, v in params.items()}


# --------------------------------------------------------------------------- forward
def forward(params: dict, x: np.ndarray, config, positions: np.ndarray, kv_cache: Optional[KVCache] = None,
            layer: int = 0, padding_mask: Optional[np.ndarray] = None, need_cache=None, record: bool = False,
            hook=None, positional=None):
    """Causal self-attention over ``x`` (B, T, C) at absolute ``positions`` (T,) -> y (B, T, C).

    Args:
        kv_cache: if given, this call's keys/values are appended to it and the
            queries attend to everything stored (incremental decoding). No backward then.
        layer: which layer of ``kv_cache`` to use.
        padding_mask: (B, S) bool, True for real tokens; keys at False are never attended.
        need_cache: keep what backward needs (None: unless inside ``nn.no_grad``).
        record: also keep the pre-softmax scores (``hook_attn_scores``) for inspection.
        hook: optional ``hook(name, array) -> array`` called with ``"hook_pattern"`` (B, H, T, S) and
            ``"hook_z"`` (B, T, H, D); its result replaces the activation (to ablate or patch a head).
        positional: what the positional stage offers attention (its registered variant, see
            `core.registry.chosen`): ``rotate`` turns q and k to their positions (RoPE),
            ``score_bias`` is added to the scores (ALiBi). None, or None fields: nothing.

    Cache names: ``hook_q``, ``hook_k``, ``hook_v`` (B, heads, T, D); ``hook_rot_q``/``hook_rot_k``
    with RoPE; ``hook_z`` (B, T, H·D, the heads side by side); ``hook_pattern`` (B, H, T, S), except
    inside `nn.lean_caches`; ``hook_attn_scores`` if recorded. What only backward reads
    (the input, the grouped causal mask, the config) is under ``cache["saved"]``.
    """
    B, T, C = x.shape
    H, G, D = config.n_heads, config.kv_heads, config.d_head
    R = H // G
    scale = 1.0 / math.sqrt(D)  # a Python float: keeps float32
    # note: one matmul for q, k and v together (x @ [W_Q | W_K | W_V]) is faster than three
    # narrow ones; the weights keep their own names and are only concatenated here.
    W_qkv, b_qkv = _fused_qkv(params, kv_cache, layer)  # (C, (H + 2G) * D)
    qkv = linear_forward(x, W_qkv, b_qkv)[0].reshape(B, T, H + 2 * G, D)  # (B, T, C) -> (B, T, H+2G, D)
    q = qkv[:, :, :H].transpose(0, 2, 1, 3)  # (B, T, H, D) -> (B, H, T, D), a view
    k = qkv[:, :, H:H + G].transpose(0, 2, 1, 3)  # -> (B, G, T, D)
    v = qkv[:, :, H + G:].transpose(0, 2, 1, 3)  # -> (B, G, T, D)
    q_in, k_in = q, k
    rotate = getattr(positional, "rotate", None)
    if rotate is not None:  # the positional stage turns q and k to their positions (RoPE)
        q = rotate(q, positions, config)  # (B, H, T, D), rotated
        k = rotate(k, positions, config)  # (B, G, T, D), rotated before it enters the KV cache

    if kv_cache is not None:
        k_all, v_all = kv_cache.append(layer, k, v)  # (B, G, S, D) with S = cached + T
    else:
        k_all, v_all = k, np.ascontiguousarray(v)  # (k is laid out anew just below)
    S = k_all.shape[2]

    # note: the scale is applied to q (B, H, T, D), not to the scores (B, H, T, S), which are
    # T/D times larger; the copy also lays a group's R heads out one after another.
    qg = np.multiply(q, scale, dtype=x.dtype).reshape(B, G, R * T, D)  # (B, H, T, D) -> (B, G, R*T, D)
    kT = k_all.transpose(0, 1, 3, 2)  # (B, G, S, D) -> (B, G, D, S), a view
    if T > 1:  # note: numpy's stacked matmul is faster on a contiguous copy, except for one query row
        kT = np.ascontiguousarray(kT)
    # causal mask: the query at absolute position p may read a key only if the key's position is <= p.
    # subtle: the S keys are the S consecutive positions ending at the last query's (with a cache:
    # everything stored, from position 0; without one: the queries' own positions, which need not start at 0).
    positions = np.asarray(positions)
    score_bias = getattr(positional, "score_bias", None)
    mask = None  # one query at the newest position sees every key: nothing to mask
    if T > 1 or padding_mask is not None or score_bias is not None:
        key_positions, causal_mask, causal_bands, causal_band_masks = _causal_layout(
            positions.astype(np.int64).tobytes(), S, np.dtype(x.dtype).str)
        mask = causal_mask if T > 1 or padding_mask is not None else None
    pattern, bands, shift, masks = None, None, None, None
    if padding_mask is None and score_bias is None and hook is None and not record and (
            lean() or not want_cache(need_cache)):
        # the common case (inference, and training inside `nn.lean_caches`): scores, softmax and z
        # block by block; the whole (B, H, T, S) pattern is never built, backward recomputes it
        bands, masks = (blockwise.whole(T, S), None) if mask is None else (causal_bands, causal_band_masks)
        shift = blockwise.needs_shift(qg, kT) if T > 1 else None  # (decoding's one row needs no bound)
        z = blockwise.attend(qg, kT, v_all, mask, bands, shift, masks)  # (B, G, R*T, D); causal tiles above the diagonal skipped
    else:  # a cache for inspection, padding, a score bias, a hook or recording: the whole pattern, kept
        scores = (qg @ kT).reshape(B, H, T, S)  # (B, G, R*T, D) @ (B, G, D, S) -> (B, H, T, S)
        if padding_mask is not None:
            padding_mask = _check_padding(padding_mask, B, S)
            mask = mask + np.where(padding_mask, 0.0, -np.inf).astype(x.dtype)[:, None, None, :]  # (B, 1, T, S)
        if mask is not None:
            scores += mask
        if score_bias is not None:  # a positional variant that biases scores by distance (e.g. ALiBi)
            scores += np.asarray(score_bias(positions, key_positions, config), dtype=x.dtype)  # (H, T, S)
        recorded = scores.copy() if record else None
        with np.errstate(invalid="ignore"):  # a padded query may see no key at all: its row is all -inf
            blockwise.softmax_in_place(scores.reshape(B * H, T, S), None)  # the scores array becomes the pattern
        pattern = scores
        if padding_mask is not None:
            pattern = np.nan_to_num(pattern, nan=0.0, copy=False)  # such a query retrieves nothing
        if hook is not None:
            pattern = hook("hook_pattern", pattern)
        z = pattern.reshape(B, G, R * T, S) @ v_all  # (B, G, R*T, S) @ (B, G, S, D) -> (B, G, R*T, D)
    z = z.reshape(B, H, T, D).transpose(0, 2, 1, 3)  # -> (B, T, H, D): what each head retrieved
    if hook is not None:
        z = hook("hook_z", z)
    z = z.reshape(B, T, H * D)  # (B, T, H, D) -> (B, T, H*D), the heads side by side
    y = linear_forward(z, params["W_O"], params.get("b_O"))[0]  # (B, T, H*D) -> (B, T, C)

    if not (want_cache(need_cache) or record):
        return y, None
    cache = {"hook_q": q_in, "hook_k": k_in, "hook_v": v, "hook_z": z}
    if pattern is not None:  # kept when recorded (the trace) or built whole; training recomputes it
        cache["hook_pattern"] = pattern
    if rotate is not None:
        cache.update(hook_rot_q=q, hook_rot_k=k)
    if record:
        cache["hook_attn_scores"] = recorded
    # what only backward reads, apart from the published names
    # note: the scaled grouped queries and the contiguous values are not kept: backward rebuilds them
    # from hook_q/k/v (copies, cheap next to the matmuls), which saves (B, T, C)-sized arrays per
    # layer while the activations wait for backward. The tiles' laid-out keys kT (one such array),
    # the shift decision, the band masks and the fused weight are kept: backward's tiles read them
    # exactly as the forward's did, without working them out again.
    cache["saved"] = {"x": x, "positions": np.asarray(positions), "uses_kv_cache": kv_cache is not None,
                      "causal_mask": mask, "bands": bands, "config": config, "positional": positional,
                      "kT": kT if bands is not None else None, "shift": shift, "band_masks": masks,
                      "W_qkv": W_qkv}
    return y, cache


@functools.lru_cache(maxsize=4)
def _causal_layout(positions: bytes, S: int, dtype: str):
    """``(key_positions (S,), mask (T, S), bands, band masks)`` for queries at ``positions`` (int64 bytes) and S keys.

    The keys are the S consecutive positions ending at the last query's; ``mask`` is 0 where a
    query may read a key and -inf where the key is in its future; ``bands`` are
    `blockwise.causal_bands` and the band masks `blockwise.band_masks`. note: every layer of a
    forward asks for the same four, so they are built once and kept (read-only) for the next
    calls with the same positions; the last 4 sets are kept (training repeats one), at most a
    few (T, S) masks of memory.
    """
    positions = np.frombuffer(positions, dtype=np.int64)  # (T,)
    key_positions = np.arange(S) + (positions[-1] + 1 - S)  # (S,)
    future = key_positions[None, :] > positions[:, None]  # (T, S) bool
    mask = np.where(future, -np.inf, 0.0).astype(dtype)
    key_positions.flags.writeable = mask.flags.writeable = False
    bands = tuple(blockwise.causal_bands(positions, key_positions))
    masks = blockwise.band_masks(mask, bands)
    for pair in filter(None, masks):
        for array in pair:
            array.flags.writeable = False
    return key_positions, mask, bands, masks


def _fused_qkv(params: dict, kv_cache=None, layer: int = 0):
    """``[W_Q | W_K | W_V]`` (C, (H+2G)·D) and the matching bias (or None).

    note: when decoding, the concatenation (a copy of three weight matrices) would cost
    more than the one-token matmul, so it is made once per KV cache and layer and kept in
    the cache's ``derived`` memo: a KV cache belongs to one set of weights anyway (its keys
    were computed with them). The memo is used only while ``params`` holds the same arrays.
    """
    names = ("W_Q", "W_K", "W_V", "b_Q", "b_K", "b_V") if "b_Q" in params else ("W_Q", "W_K", "W_V")
    memo = getattr(kv_cache, "derived", None)
    if memo is not None:
        kept = memo.get(("qkv", layer))
        if kept is not None and kept[0] == tuple(map(id, map(params.__getitem__, names))):
            return kept[1]
    W = np.concatenate([params["W_Q"], params["W_K"], params["W_V"]], axis=1)
    b = np.concatenate([params["b_Q"], params["b_K"], params["b_V"]]) if "b_Q" in params else None
    if memo is not None:
        memo[("qkv", layer)] = (tuple(id(params[n]) for n in names), (W, b), [params[n] for n in names])
    return W, b


def _require_rotate_backward(positional):
    fn = getattr(positional, "rotate_backward", None)
    if fn is None:
        raise ValueError(f"the positional variant {getattr(positional, 'name', positional)!r} rotates q and k "
                         "but has no rotate_backward, so attention cannot be trained with it; register it with "
                         "rotate_backward=...")
    return fn


def _check_padding(padding_mask, B: int, S: int) -> np.ndarray:
    padding_mask = np.asarray(padding_mask)
    if padding_mask.shape != (B, S) or padding_mask.dtype != bool:
        raise ValueError(f"padding_mask must be a bool array of shape (batch, keys) = ({B}, {S}), "
                         f"got {padding_mask.dtype} {padding_mask.shape}")
    return padding_mask


# --------------------------------------------------------------------------- backward
def backward(params: dict, cache: dict, dy: np.ndarray):
    """Gradients of `forward` (without a KV cache). Returns ``(dx, grads)`` with the keys of ``params``."""
    require_cache(cache)
    saved = cache["saved"]
    if saved["uses_kv_cache"]:
        raise ValueError("attention.backward does not support a forward that used a KV cache (inference only); "
                         "run the forward on the whole sequence without kv_cache to train")
    config, positional = saved["config"], saved["positional"]
    H, G, D = config.n_heads, config.kv_heads, config.d_head
    x, z = saved["x"], cache["hook_z"]
    B, T, C = x.shape
    R = H // G
    scale = 1.0 / math.sqrt(D)
    rotated = getattr(positional, "rotate", None) is not None
    q = cache["hook_rot_q"] if rotated else cache["hook_q"]  # (B, H, T, D)
    # rebuilt as the forward built them (it did not keep these copies)
    qg = np.multiply(q, scale, dtype=x.dtype).reshape(B, G, R * T, D)  # (B, H, T, D) -> (B, G, R*T, D)
    k = cache["hook_rot_k"] if rotated else cache["hook_k"]  # (B, G, S, D)
    vT = np.ascontiguousarray(cache["hook_v"].transpose(0, 1, 3, 2))  # (B, G, S, D) -> (B, G, D, S)
    has_bias = "b_O" in params
    grads = {}

    dz, grads["W_O"], db_O = linear_backward(dy, z, params["W_O"], has_bias)  # (B, T, C) -> (B, T, H*D)
    dz4 = dz.reshape(B, T, H, D)
    # note: rowsum(dpattern * pattern) equals rowsum(dz * z) per head (because z = pattern @ v),
    # a (B, T, H, D) product instead of a (B, H, T, S) one: the trick FlashAttention uses.
    delta = np.einsum("bthd,bthd->bht", dz4, z.reshape(B, T, H, D)).reshape(B, G, R * T, 1)
    dzg = np.ascontiguousarray(dz4.transpose(0, 2, 1, 3)).reshape(B, G, R * T, D)  # -> (B, G, R*T, D)
    if "hook_pattern" in cache:  # the forward kept the whole pattern
        k = np.ascontiguousarray(k)
        pg = cache["hook_pattern"].reshape(B, G, R * T, T)  # (B, H, T, S) -> (B, G, R*T, S), here S = T
        dv = pg.transpose(0, 1, 3, 2) @ dzg  # (B, G, S, R*T) @ (B, G, R*T, D) -> (B, G, S, D): sums the R heads
        dscores = dzg @ vT  # d pattern: (B, G, R*T, D) @ (B, G, D, S) -> (B, G, R*T, S)
        # softmax backward, in place: dscores = pattern * (dpattern - rowsum(dpattern * pattern))
        dscores -= delta
        dscores *= pg  # masked entries have pattern 0, so they get no gradient
        dq = (dscores @ k).reshape(B, H, T, D)  # (B, G, R*T, S) @ (B, G, S, D) -> (B, H, T, D)
        dk = dscores.transpose(0, 1, 3, 2) @ qg  # (B, G, S, R*T) @ (B, G, R*T, D) -> (B, G, S, D)
    else:  # the same, tile by tile, each tile's pattern recomputed as the forward computed it
        dq, dk, dv = blockwise.attend_backward(qg, saved["kT"], vT, dzg, delta, saved["causal_mask"],
                                               saved["bands"], saved["shift"], saved["band_masks"])
        dq = dq.reshape(B, H, T, D)  # (B, G, R*T, D) -> (B, H, T, D)
    dq *= scale  # the scale was applied to q
    if rotated:  # back through the rotation of q and k
        unrotate = _require_rotate_backward(positional)
        dq = unrotate(dq, saved["positions"], config)
        dk = unrotate(dk, saved["positions"], config)

    # gather the three gradients into the fused layout, then one backward through x @ W_qkv
    dqkv = np.empty((B, T, H + 2 * G, D), dtype=dz.dtype)  # (B, T, H+2G, D)
    dqkv[:, :, :H] = dq.transpose(0, 2, 1, 3)
    dqkv[:, :, H:H + G] = dk.transpose(0, 2, 1, 3)
    dqkv[:, :, H + G:] = dv.transpose(0, 2, 1, 3)
    dx, dW, db = linear_backward(dqkv.reshape(B, T, -1), x, saved["W_qkv"], has_bias)  # the forward's [W_Q | W_K | W_V]
    HD, GD = H * D, G * D
    grads.update(W_Q=dW[:, :HD], W_K=dW[:, HD:HD + GD], W_V=dW[:, HD + GD:])
    if has_bias:
        grads.update(b_Q=db[:HD], b_K=db[HD:HD + GD], b_V=db[HD + GD:], b_O=db_O)
    return dx, grads
