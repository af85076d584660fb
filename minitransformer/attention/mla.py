"""Stage 4, Multi-Head Latent Attention (concept: retrieval from a compressed index).

Ordinary attention keeps, for every past token, a key and a value per head: the
KV cache is an index with H·D-wide entries, and at long contexts it is what
fills the memory of an inference server. MLA (DeepSeek-V2, 2024) stores one
small **latent** c_KV per token instead, and rebuilds every head's key and
value from it with two up-projections (weights in (in, out) layout, as in the
rest of the package; DeepSeek's code stores them (out, in)):

    c_KV = RMSNorm(x @ W_DKV)            (B, T, Dc)   the compressed index entry: cached
    k_C  = c_KV @ W_UK                   (B, T, H·Dh) content keys, one per head
    v    = c_KV @ W_UV                   (B, T, H·Dv) values, one per head
    c_Q  = RMSNorm(x @ W_DQ)             (B, T, Dq)   query latent (or q = x @ W_Q directly)
    q_C  = c_Q @ W_UQ                    (B, T, H·Dh) content queries
    q_R  = RoPE(c_Q @ W_QR)              (B, T, H·Dr) per-head positional queries
    k_R  = RoPE(x @ W_KR)                (B, T, Dr)   ONE positional key shared by all heads: cached
    score(t, j, head i) = scale · (q_C·k_C + q_R·k_R),  scale = mult / sqrt(Dh + Dr)
    y = softmax(score + causal mask) @ v, heads concatenated, @ W_O

**Decoupled RoPE.** Position lives in a separate narrow channel (q_R, k_R), and
the content channel (q_C, k_C, v) never sees a rotation. That is what makes the
second trick possible:

**Weight absorption** (``impl="absorbed"``, for decoding). q_C·k_C =
(q_C W_UKᵀ)·c_KV, so a query can be moved into latent space once and compared
with the cached latents directly; and Σ_j a_j (c_KV,j W_UV) = (Σ_j a_j c_KV,j) W_UV,
so the weighted sum is taken over latents and up-projected once per head. Keys
and values are never materialised: it is multi-query attention with one shared
key [c_KV; k_R] of width Dc + Dr and one shared value c_KV of width Dc. Were
RoPE applied to k_C, a position-dependent rotation would sit between W_UQ and
W_UK and nothing could be absorbed (DeepSeek-V2 §2.1.3).

``impl="naive"`` materialises per-head keys and values (training, prefill, and
the backward pass); both paths give the same output. `mla_reference` is MLA
from the equations above, tested equal to the naive path (forward, backward,
decoding). The cache (`LatentKVCache`) holds exactly c_KV and the rotated k_R:
T·(Dc + Dr) numbers per layer and sequence, against 2·H·D for multi-head attention.

Dimension letters: B batch, T query positions, S key positions (T, or the cache
length when decoding), C model width, H heads, Dh per-head content (no-RoPE)
query/key width (= d_head), Dv per-head value width (= d_head), Dc key/value
latent width (d_c), Dq query latent width (d_c'), Dr decoupled RoPE width (d_R),
N = H·T query rows of one sequence, folded together (the multi-query view).

note: fused matmuls. The projections that read the same input are one matmul:
x @ [W_DQ | W_DKV | W_KR] (DeepSeek's ``wq_a`` and ``wkv_a``), c_Q @ [W_UQ | W_QR]
and c_KV @ [W_UK | W_UV] (``wkv_b``, with heads as blocks of columns). The
parameters keep their own role names and are only concatenated inside forward.

Deliberately left out: YaRN context extension (``softmax_scale_mult`` is the
hook where its mscale² goes), the "scaling factors at width bottlenecks" of
DeepSeek-V2 §3.1.2 (not visible in the released code), KV-cache quantisation,
attention dropout, padding masks, biases (DeepSeek's attention has none, so
``config.bias`` does not apply here), and a backward for the absorbed path
(training uses the naive one).

References: DeepSeek-AI 2024, "DeepSeek-V2" (arXiv 2405.04434) §2.1, Table 1,
§3.1.2; DeepSeek-AI 2024, "DeepSeek-V3" (arXiv 2412.19437) §2.1.1; the
DeepSeek-V3 reference inference code (``inference/model.py``, class ``MLA``,
``attn_impl = "naive" | "absorb"``); the FlashMLA README; and S. Raschka's MLA
bonus chapter in *LLMs from Scratch* (latent cache without RoPE or absorption).
The project's guide to MLA, with the checks the tests make, is ``docs/mla.md``.

    >>> from minitransformer.core.config import ModelConfig
    >>> cfg = ModelConfig(d_model=32, n_heads=4, attention="mla", positional="rope", d_latent=16, d_rope=4, bias=False)
    >>> from minitransformer.core import registry
    >>> rope = registry.chosen("positional", cfg)      # what the positional stage offers: a rotation
    >>> params = init(cfg, np.random.default_rng(0))
    >>> sorted(params)
    ['W_DKV', 'W_KR', 'W_O', 'W_Q', 'W_UK', 'W_UV', 'kv_norm']
    >>> x = np.random.default_rng(1).normal(size=(1, 5, 32)).astype(np.float32)
    >>> y, _ = forward(params, x, cfg, np.arange(5), positional=rope)
    >>> y_abs, _ = forward(params, x, cfg, np.arange(5), impl="absorbed", positional=rope)
    >>> y.shape, bool(np.allclose(y, y_abs, atol=1e-6))
    ((1, 5, 32), True)
    >>> cache = LatentKVCache.for_config(cfg)
    >>> _ = forward(params, x, cfg, np.arange(5), kv_cache=cache, positional=rope)
    >>> cache.numbers_per_token, cache.nbytes   # Dc + Dr = 20 numbers per token and layer, float32
    (20, 400)
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..core.nn import linear_backward, linear_forward, rmsnorm_backward, rmsnorm_forward, want_cache

from .kv_cache import LatentKVCache

IMPLS = ("naive", "absorbed")


# --------------------------------------------------------------------------- sizes
def dims(config) -> tuple:
    """``(H, Dh, Dv, Dc, Dq, Dr)`` for an ``attention="mla"`` config (Dq = 0: no query compression)."""
    if config.attention != "mla":
        raise ValueError(f"attention.mla needs a config with attention='mla', got attention={config.attention!r}")
    return config.n_heads, config.d_head, config.d_head, config.latent_dim, config.latent_q_dim, config.rope_dim


def softmax_scale(config) -> float:
    """``mult / sqrt(Dh + Dr)`` (DeepSeek-V2 eq. 18), a Python float so float32 stays float32."""
    H, Dh, Dv, Dc, Dq, Dr = dims(config)
    return float(config.softmax_scale_mult) / math.sqrt(Dh + Dr)


# --------------------------------------------------------------------------- parameters
def init(config, rng: np.random.Generator) -> dict:
    """The MLA weights of one layer, (in, out) layout, float32.

    ``W_DKV`` (C, Dc), ``W_KR`` (C, Dr), ``W_UK`` (Dc, H·Dh), ``W_UV`` (Dc, H·Dv),
    ``W_O`` (H·Dv, C); with query compression ``W_DQ`` (C, Dq), ``W_UQ`` (Dq, H·Dh),
    ``W_QR`` (Dq, H·Dr), else ``W_Q`` (C, H·(Dh + Dr)) laid out as [all q_C | all q_R];
    RMSNorm gains ``kv_norm`` (Dc,) and ``q_norm`` (Dq,) (ones) when ``latent_norm``.
    ``W_KR`` and ``W_QR`` are absent when Dr = 0. W_O is scaled by 1/sqrt(2·n_layers)
    as in `attention.mha.init`.
    """
    H, Dh, Dv, Dc, Dq, Dr = dims(config)
    C, std = config.d_model, config.init_std
    shapes = {}
    if Dq:
        shapes.update(W_DQ=(C, Dq), W_UQ=(Dq, H * Dh))
        if Dr:
            shapes["W_QR"] = (Dq, H * Dr)
    else:
        shapes["W_Q"] = (C, H * (Dh + Dr))
    shapes.update(W_DKV=(C, Dc), W_UK=(Dc, H * Dh), W_UV=(Dc, H * Dv))
    if Dr:
        shapes["W_KR"] = (C, Dr)
    params = {name: rng.normal(0.0, std, shape) for name, shape in shapes.items()}
    params["W_O"] = rng.normal(0.0, std / math.sqrt(2 * config.n_layers), (H * Dv, C))
    if config.latent_norm:
        params["kv_norm"] = np.ones(Dc)
        if Dq:
            params["q_norm"] = np.ones(Dq)
    return {k: v.astype(np.float32) for k, v in params.items()}


def _fused(params: dict, Dq: int, Dr: int):
    """The three fused weights: down (C, ·), query up (Dq, H·(Dh+Dr)) or None, key/value up (Dc, H·(Dh+Dv))."""
    if Dq:
        down = [params["W_DQ"], params["W_DKV"]] + ([params["W_KR"]] if Dr else [])
        q_up = np.concatenate([params["W_UQ"]] + ([params["W_QR"]] if Dr else []), axis=1)
    else:
        down = [params["W_Q"], params["W_DKV"]] + ([params["W_KR"]] if Dr else [])
        q_up = None
    W_down = np.concatenate(down, axis=1)  # (C, Dq + Dc + Dr), or (C, H(Dh+Dr) + Dc + Dr)
    W_ukv = np.concatenate([params["W_UK"], params["W_UV"]], axis=1)  # (Dc, H·Dh + H·Dv)
    return W_down, q_up, W_ukv


# --------------------------------------------------------------------------- forward
def forward(params: dict, x: np.ndarray, config, positions, kv_cache: Optional[LatentKVCache] = None,
            layer: int = 0, need_cache=None, record: bool = False, impl: Optional[str] = None, hook=None,
            positional=None):
    """Causal multi-head latent attention over ``x`` (B, T, C) at absolute ``positions`` (T,) -> y (B, T, C).

    Args:
        kv_cache: a `LatentKVCache`; this call's c_KV and k_R are appended and the
            queries attend to everything stored (incremental decoding). No backward then.
        layer: which layer of ``kv_cache`` to use.
        need_cache: keep what backward needs (None: unless inside ``nn.no_grad``).
        record: also keep the pre-softmax scores (``hook_attn_scores``) for inspection.
        impl: ``"naive"`` (materialise per-head keys and values; re-up-projects the whole
            latent cache when decoding) or ``"absorbed"`` (scores and outputs in latent
            space). None chooses: absorbed when decoding with a cache that already holds
            more positions than this call adds (queries ≪ keys), naive otherwise.
        hook: optional ``hook(name, array) -> array`` called with ``"hook_pattern"`` (B, H, T, S)
            and ``"hook_z"`` (B, T, H, Dv); its result replaces the activation (as in `attention`).
        positional: what the positional stage offers attention (see `mha.forward`): its ``rotate``
            turns the decoupled channel q_R, k_R (a config with ``d_rope > 0`` needs one), and its
            ``score_bias`` is added to the scores, on both paths.

    Cache names: ``hook_latent`` c_KV (B, T, Dc); ``hook_latent_q`` c_Q (B, T, Dq) with
    query compression; ``hook_q`` content queries q_C (B, H, T, Dh); ``hook_rot_q`` (B, H, T, Dr)
    and ``hook_rot_k`` (B, T, Dr), the rotated positional query and shared key; ``hook_k``,
    ``hook_v`` (B, H, S, Dh/Dv) on the naive path; ``hook_q_latent`` (B, H, T, Dc) (absorbed
    queries) and ``hook_z_latent`` (B, H, T, Dc) on the absorbed path; ``hook_pattern``
    (B, H, T, S); ``hook_z`` (B, T, H·Dv); ``hook_attn_scores`` if recorded. ``impl`` says
    which path ran; what only backward reads is under ``cache["saved"]`` (named entries).
    """
    H, Dh, Dv, Dc, Dq, Dr = dims(config)
    x, positions = _check_inputs(x, positions, config)
    if impl is not None and impl not in IMPLS:  # checked before anything is appended to the cache
        raise ValueError(f"impl={impl!r} is not valid; choose one of {', '.join(map(repr, IMPLS))}")
    B, T, C = x.shape
    scale = softmax_scale(config)
    keep = want_cache(need_cache) or record
    W_down, W_uq, W_ukv = _fused(params, Dq, Dr)
    norm, eps = config.latent_norm, config.norm_eps

    # ---- down-projections: one matmul from x for everything that reads x
    down = linear_forward(x, W_down)[0]  # (B, T, C) -> (B, T, Dq + Dc + Dr)  [or H(Dh+Dr) + Dc + Dr]
    a = Dq if Dq else H * (Dh + Dr)  # where the key/value part starts
    c_q = q_norm_cache = None
    if Dq:
        c_q = down[..., :Dq]  # (B, T, Dq)
        if norm:
            c_q, q_norm_cache = rmsnorm_forward(c_q, params["q_norm"], eps)  # (B, T, Dq), unit RMS · gain
        q_all = linear_forward(c_q, W_uq)[0]  # (B, T, Dq) -> (B, T, H·(Dh + Dr))
    else:
        q_all = down[..., :a]  # (B, T, H·(Dh + Dr)), a view
    c_kv = down[..., a:a + Dc]  # (B, T, Dc)
    kv_norm_cache = None
    if norm:
        c_kv, kv_norm_cache = rmsnorm_forward(c_kv, params["kv_norm"], eps)  # (B, T, Dc): what is cached
    q_c = q_all[..., :H * Dh].reshape(B, T, H, Dh).transpose(0, 2, 1, 3)  # -> (B, H, T, Dh), a view
    q_r = q_all[..., H * Dh:].reshape(B, T, H, Dr).transpose(0, 2, 1, 3)  # -> (B, H, T, Dr), a view
    k_r = down[..., a + Dc:]  # (B, T, Dr), a view
    if Dr:
        rotate = getattr(positional, "rotate", None)
        if rotate is None:
            raise ValueError(f"this config has a decoupled RoPE channel (d_rope={Dr}) but no rotation was given: "
                             "pass positional=core.registry.chosen('positional', config) (a rotary variant)")
        q_r = rotate(q_r, positions, config)  # (B, H, T, Dr), rotated
        k_r = rotate(k_r, positions, config)  # (B, T, Dr), rotated once, then cached

    # ---- the index: this call's entries, or everything the cache holds
    if kv_cache is not None:
        cached_before = kv_cache.lengths[layer]
        kv_all = kv_cache.append(layer, c_kv, k_r)  # (B, S, Dc + Dr), S = cached + T
    else:
        cached_before = 0
        kv_all = np.concatenate([c_kv, k_r], axis=-1)  # (B, T, Dc + Dr)
    S = kv_all.shape[1]
    c_all, kr_all = kv_all[..., :Dc], kv_all[..., Dc:]  # (B, S, Dc), (B, S, Dr), views
    if impl is None:
        impl = "absorbed" if kv_cache is not None and T < cached_before else "naive"

    # causal mask. note: the cache holds consecutive positions, so key j stands at absolute
    # position positions[0] - cached_before + j; with shifted positions (T5) the mask shifts too.
    key_pos = positions[0] - cached_before + np.arange(S)  # (S,)
    mask = np.where(key_pos[None, :] > positions[:, None], -np.inf, 0.0).astype(x.dtype)  # (T, S)

    # the positional channel is multi-query: H·T query rows against the one shared k_R
    qs_r = np.multiply(q_r, scale, dtype=x.dtype).reshape(B, H * T, Dr)  # (B, H, T, Dr) -> (B, N, Dr), scaled copy
    qs_c = np.multiply(q_c, scale, dtype=x.dtype)  # (B, H, T, Dh), scaled copy
    out = {}
    if impl == "naive":
        # materialise every head's key and value from the latents (re-up-projecting all S
        # of them when decoding: the memory saving of the cache is paid for in compute)
        kv_up = linear_forward(c_all, W_ukv)[0]  # (B, S, Dc) -> (B, S, H·(Dh + Dv))
        k_c = np.ascontiguousarray(kv_up[..., :H * Dh].reshape(B, S, H, Dh).transpose(0, 2, 3, 1))  # (B, H, Dh, S)
        v = np.ascontiguousarray(kv_up[..., H * Dh:].reshape(B, S, H, Dv).transpose(0, 2, 1, 3))  # (B, H, S, Dv)
        scores = qs_c @ k_c  # content: (B, H, T, Dh) @ (B, H, Dh, S) -> (B, H, T, S)
        scores += (qs_r @ kr_all.transpose(0, 2, 1)).reshape(B, H, T, S)  # position: (B, N, Dr) @ (B, Dr, S)
        out.update(hook_k=k_c.transpose(0, 1, 3, 2), hook_v=v)
    else:
        # absorb W_UK into the query: q_C · (c W_UK,i) = (q_C W_UK,iᵀ) · c, per head i
        W_uk = params["W_UK"].reshape(Dc, H, Dh).transpose(1, 2, 0)  # (Dc, H·Dh) -> (H, Dh, Dc)
        q_lat = qs_c @ W_uk  # (B, H, T, Dh) @ (H, Dh, Dc) -> (B, H, T, Dc)
        # subtle: [q_lat | q_R] against [c_KV | k_R] is ONE product of width Dc + Dr: the cache row
        # is the single shared key of multi-query attention (FlashMLA's "MQA mode", 576 wide).
        q_mqa = np.concatenate([q_lat.reshape(B, H * T, Dc), qs_r], axis=-1)  # (B, N, Dc + Dr)
        # note: computed as cache @ queriesᵀ, (S, Dc+Dr) @ (Dc+Dr, N): with few query rows this order
        # streams the cache through BLAS about twice as fast as queries @ cacheᵀ (measured at S = 4096)
        scores = kv_all @ q_mqa.transpose(0, 2, 1)  # (B, S, Dc+Dr) @ (B, Dc+Dr, N) -> (B, S, N)
        scores = np.ascontiguousarray(scores.transpose(0, 2, 1)).reshape(B, H, T, S)  # -> (B, H, T, S)
        out.update(hook_q_latent=q_lat)
    scores += mask  # (B, H, T, S) + (T, S)
    score_bias = getattr(positional, "score_bias", None)
    if score_bias is not None:  # a positional variant that biases scores by distance (e.g. ALiBi)
        scores += np.asarray(score_bias(positions, key_pos, config), dtype=x.dtype)  # (H, T, S)
    recorded = scores.copy() if record else None
    scores -= scores.max(axis=-1, keepdims=True)  # softmax over keys, in place: scores become the pattern
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    pattern = scores  # (B, H, T, S)
    if hook is not None:
        pattern = hook("hook_pattern", pattern)

    if impl == "naive":
        z = pattern @ v  # (B, H, T, S) @ (B, H, S, Dv) -> (B, H, T, Dv)
    else:
        # attend over the latents themselves: the shared value of the multi-query view
        z_lat = (pattern.reshape(B, H * T, S) @ c_all).reshape(B, H, T, Dc)  # (B, N, S) @ (B, S, Dc) -> (B, H, T, Dc)
        W_uv = params["W_UV"].reshape(Dc, H, Dv).transpose(1, 0, 2)  # (Dc, H·Dv) -> (H, Dc, Dv)
        z = z_lat @ W_uv  # up-project once per head: (B, H, T, Dc) @ (H, Dc, Dv) -> (B, H, T, Dv)
        out.update(hook_z_latent=z_lat)
    z = z.transpose(0, 2, 1, 3)  # (B, H, T, Dv) -> (B, T, H, Dv): what each head retrieved
    if hook is not None:
        z = hook("hook_z", z)
    z = z.reshape(B, T, H * Dv)  # (B, T, H, Dv) -> (B, T, H·Dv), the heads side by side
    y = linear_forward(z, params["W_O"])[0]  # (B, T, H·Dv) -> (B, T, C)

    if not keep:
        return y, None
    cache = {"hook_latent": c_kv, "hook_q": q_c, "hook_rot_q": q_r, "hook_rot_k": k_r,
             "hook_pattern": pattern, "hook_z": z, **out, "impl": impl}  # impl: which path ran
    if Dq:
        cache["hook_latent_q"] = c_q
    if record:
        cache["hook_attn_scores"] = recorded
    # what only backward reads, apart from the published names (the naive path's)
    saved = {"x": x, "positions": positions, "uses_kv_cache": kv_cache is not None}
    if impl == "naive":
        saved.update(queries_content_scaled=qs_c, queries_rope_scaled=qs_r, keys_content=k_c, values=v,
                     keys_rope=kr_all, W_down_fused=W_down, W_q_up_fused=W_uq, W_kv_up_fused=W_ukv,
                     q_norm_cache=q_norm_cache, kv_norm_cache=kv_norm_cache, config=config, positional=positional)
    cache["saved"] = saved
    return y, cache


def _check_inputs(x, positions, config):
    if not isinstance(x, np.ndarray) or x.ndim != 3 or x.shape[-1] != config.d_model:
        raise ValueError(f"x must be an array of shape (B, T, C) with C = d_model = {config.d_model}, "
                         f"got {getattr(x, 'shape', type(x).__name__)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x must be a float array (float32 in training), got {x.dtype}")
    positions = np.asarray(positions)
    if positions.shape != (x.shape[1],) or not np.issubdtype(positions.dtype, np.integer):
        raise ValueError(f"positions must be a (T,) = ({x.shape[1]},) int array, "
                         f"got {positions.dtype} {positions.shape}")
    if positions.size > 1 and np.any(np.diff(positions) != 1):
        raise ValueError("positions must be consecutive (start_pos + arange(T)): the latent cache stores "
                         "positions in order and the causal mask relies on it")
    return x, positions


# --------------------------------------------------------------------------- backward
def backward(params: dict, cache: dict, dy: np.ndarray):
    """Gradients of the naive `forward` (without a cache). Returns ``(dx, grads)`` with the keys of ``params``."""
    if cache is None:
        raise ValueError("backward needs the cache from forward; run forward with need_cache=True, "
                         "outside nn.no_grad()")
    saved = cache["saved"]
    if saved["uses_kv_cache"]:
        raise ValueError("attention.mla.backward does not support a forward that used a latent cache (inference "
                         "only); run the forward on the whole sequence without kv_cache to train")
    if cache["impl"] != "naive":
        raise ValueError("attention.mla.backward differentiates the naive path only; train with impl='naive' "
                         "(the absorbed path gives the same output and is meant for decoding)")
    config, positional = saved["config"], saved["positional"]
    H, Dh, Dv, Dc, Dq, Dr = dims(config)
    scale = softmax_scale(config)
    x, pattern, z = saved["x"], cache["hook_pattern"], cache["hook_z"]
    qs_c, qs_r = saved["queries_content_scaled"], saved["queries_rope_scaled"]  # (B, H, T, Dh), (B, N, Dr)
    k_c, v, kr = saved["keys_content"], saved["values"], saved["keys_rope"]  # (B, H, Dh, S), (B, H, S, Dv), (B, S, Dr)
    W_down, W_uq, W_ukv = saved["W_down_fused"], saved["W_q_up_fused"], saved["W_kv_up_fused"]
    q_norm_cache, kv_norm_cache = saved["q_norm_cache"], saved["kv_norm_cache"]
    B, T, C = x.shape
    grads = {}

    dz, grads["W_O"], _ = linear_backward(dy, z, params["W_O"])  # (B, T, C) -> (B, T, H·Dv)
    dz4 = dz.reshape(B, T, H, Dv)
    # note: rowsum(dpattern * pattern) = rowsum(dz * z) per head, as in attention.backward
    delta = np.einsum("bthd,bthd->bht", dz4, z.reshape(B, T, H, Dv))[..., None]  # (B, H, T, 1)
    dzh = np.ascontiguousarray(dz4.transpose(0, 2, 1, 3))  # (B, H, T, Dv)
    dv = pattern.transpose(0, 1, 3, 2) @ dzh  # (B, H, S, T) @ (B, H, T, Dv) -> (B, H, S, Dv)
    dscores = dzh @ v.transpose(0, 1, 3, 2)  # d pattern: (B, H, T, Dv) @ (B, H, Dv, S) -> (B, H, T, S)
    dscores -= delta  # softmax backward, in place: pattern * (dpattern - rowsum)
    dscores *= pattern  # masked entries have pattern 0: no gradient
    dq_c = dscores @ k_c.transpose(0, 1, 3, 2)  # (B, H, T, S) @ (B, H, S, Dh) -> (B, H, T, Dh)
    dk_c = dscores.transpose(0, 1, 3, 2) @ qs_c  # (B, H, S, T) @ (B, H, T, Dh) -> (B, H, S, Dh)
    ds_n = dscores.reshape(B, H * T, T)  # (B, N, S): the multi-query view of the positional channel
    dq_r = (ds_n @ kr).reshape(B, H, T, Dr)  # (B, N, S) @ (B, S, Dr) -> (B, H, T, Dr)
    dk_r = ds_n.transpose(0, 2, 1) @ qs_r  # (B, S, N) @ (B, N, Dr) -> (B, S, Dr): sums over the H heads
    dq_c *= scale  # the scale was applied to the queries
    dq_r *= scale
    if Dr:  # back through the rotation of the decoupled channel
        unrotate = getattr(positional, "rotate_backward", None)
        if unrotate is None:
            raise ValueError("the positional variant rotates q_R and k_R but has no rotate_backward, so MLA "
                             "cannot be trained with it; register it with rotate_backward=...")
        dq_r = unrotate(dq_r, saved["positions"], config)  # (B, H, T, Dr)
        dk_r = unrotate(dk_r, saved["positions"], config)  # (B, T, Dr)

    # up-projection of the latents: c_KV @ [W_UK | W_UV]
    dkv_up = np.concatenate([dk_c.transpose(0, 2, 1, 3).reshape(B, T, H * Dh),
                             dv.transpose(0, 2, 1, 3).reshape(B, T, H * Dv)], axis=-1)  # (B, T, H·(Dh + Dv))
    dc_kv, dW_ukv, _ = linear_backward(dkv_up, cache["hook_latent"], W_ukv)  # -> (B, T, Dc), (Dc, H·(Dh+Dv))
    grads.update(W_UK=dW_ukv[:, :H * Dh], W_UV=dW_ukv[:, H * Dh:])
    if kv_norm_cache is not None:
        dc_kv, grads["kv_norm"] = rmsnorm_backward(dc_kv, kv_norm_cache)  # (B, T, Dc)
    dq_all = np.concatenate([dq_c.transpose(0, 2, 1, 3).reshape(B, T, H * Dh),
                             dq_r.transpose(0, 2, 1, 3).reshape(B, T, H * Dr)], axis=-1)  # (B, T, H·(Dh + Dr))
    if Dq:
        dc_q, dW_uq, _ = linear_backward(dq_all, cache["hook_latent_q"], W_uq)  # -> (B, T, Dq), (Dq, H·(Dh+Dr))
        grads["W_UQ"] = dW_uq[:, :H * Dh]
        if Dr:
            grads["W_QR"] = dW_uq[:, H * Dh:]
        if q_norm_cache is not None:
            dc_q, grads["q_norm"] = rmsnorm_backward(dc_q, q_norm_cache)  # (B, T, Dq)
        dq_part = dc_q
    else:
        dq_part = dq_all
    ddown = np.concatenate([dq_part, dc_kv, dk_r], axis=-1)  # (B, T, Dq + Dc + Dr)  [or H(Dh+Dr) + Dc + Dr]
    dx, dW_down, _ = linear_backward(ddown, x, W_down)  # -> (B, T, C), (C, ·)
    a = dq_part.shape[-1]
    grads["W_DQ" if Dq else "W_Q"] = dW_down[:, :a]
    grads["W_DKV"] = dW_down[:, a:a + Dc]
    if Dr:
        grads["W_KR"] = dW_down[:, a + Dc:]
    return dx, grads
