"""Stage 4: attention against a naive per-head reference, gradients, causality, and the KV cache."""

import math

import numpy as np
import pytest

from minitransformer.core import registry
from minitransformer import positional
from minitransformer.attention import mha
from minitransformer.core.config import ModelConfig
from minitransformer.core.nn import softmax
from minitransformer.kit import gradcheck

VARIANTS = [
    dict(n_heads=4),  # multi-head
    dict(n_heads=4, n_kv_heads=2),  # grouped-query
    dict(n_heads=4, n_kv_heads=1),  # multi-query
    dict(n_heads=4, positional="rope", rope_style="half"),
    dict(n_heads=4, n_kv_heads=2, positional="rope", rope_style="interleaved"),
    dict(n_heads=2, bias=False),
]


def config(**kw):
    return ModelConfig(**{**dict(vocab_size=16, context_length=12, d_model=16, n_layers=1), **kw})


def f64(params):
    return {k: v.astype(np.float64) for k, v in params.items()}


def naive_attention(params, x, cfg, positions):
    """Loop over heads and positions: the definition, with nothing clever."""
    B, T, C = x.shape
    H, G, D = cfg.n_heads, cfg.kv_heads, cfg.d_head
    q = x @ params["W_Q"] + params.get("b_Q", 0)
    k = x @ params["W_K"] + params.get("b_K", 0)
    v = x @ params["W_V"] + params.get("b_V", 0)
    out = np.zeros((B, T, H * D))
    for h in range(H):
        g = h // (H // G)  # the key/value head this query head reads
        qh, kh, vh = q[..., h * D:(h + 1) * D], k[..., g * D:(g + 1) * D], v[..., g * D:(g + 1) * D]
        if cfg.positional == "rope":
            cos, sin = positional.rope_angles(positions, D, cfg.rope_base)
            qh = positional.rope_apply(qh, cos, sin, cfg.rope_style)
            kh = positional.rope_apply(kh, cos, sin, cfg.rope_style)
        for b in range(B):
            for t in range(T):
                s = kh[b, : t + 1] @ qh[b, t] / math.sqrt(D)
                out[b, t, h * D:(h + 1) * D] = softmax(s) @ vh[b, : t + 1]
    return out @ params["W_O"] + params.get("b_O", 0)


@pytest.mark.parametrize("kw", VARIANTS)
def test_forward_equals_naive_reference(kw):
    cfg = config(**kw)
    rng = np.random.default_rng(0)
    params = f64(mha.init(cfg, rng))
    params = {k: v + rng.normal(0, 0.3, v.shape) for k, v in params.items()}  # not tiny, not zero biases
    x = rng.normal(size=(2, 7, cfg.d_model))
    pos = np.arange(7)
    y, _ = mha.forward(params, x, cfg, pos, positional=registry.chosen("positional", cfg))
    assert np.allclose(y, naive_attention(params, x, cfg, pos), atol=1e-12)


def test_hand_computed_two_by_two():
    # one head, D = 2, identity projections: q = k = v = x
    cfg = config(d_model=2, n_heads=1, bias=False)
    eye = np.eye(2)
    params = {"W_Q": eye, "W_K": eye, "W_V": eye, "W_O": eye}
    x = np.array([[[1.0, 0.0], [1.0, 1.0]]])
    y, cache = mha.forward(params, x, cfg, np.arange(2), record=True, positional=registry.chosen("positional", cfg))
    # position 0 sees only itself; position 1: scores [1, 2] / sqrt(2)
    w = np.exp([1 / math.sqrt(2), 2 / math.sqrt(2)])
    w /= w.sum()
    assert np.allclose(cache["hook_pattern"][0, 0], [[1, 0], [w[0], w[1]]])
    assert np.allclose(y[0], [[1, 0], [1, w[1]]])
    assert cache["hook_attn_scores"][0, 0, 0, 1] == -np.inf


@pytest.mark.parametrize("kw", VARIANTS)
def test_backward_gradcheck(kw):
    cfg = config(**kw)
    rng = np.random.default_rng(1)
    params = f64(mha.init(cfg, rng))
    params = {k: v + rng.normal(0, 0.3, v.shape) for k, v in params.items()}
    x = rng.normal(size=(2, 5, cfg.d_model))
    pos = np.arange(3, 8)  # not starting at 0: RoPE angles must follow the positions
    y, cache = mha.forward(params, x, cfg, pos, positional=registry.chosen("positional", cfg))
    dy = rng.normal(size=y.shape)
    dx, grads = mha.backward(params, cache, dy)
    assert set(grads) == set(params)
    arrays = {"x": x, **params}
    report = gradcheck(lambda a: mha.forward({k: a[k] for k in params}, a["x"], cfg, pos, positional=registry.chosen("positional", cfg))[0],
                       arrays, {"x": dx, **grads}, dy)
    assert report.ok, str(report)


def test_gqa_is_mha_with_shared_kv_heads_and_mqa_is_one_group():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1, 6, 16))
    pos = np.arange(6)
    for G in (2, 1):
        gqa_cfg, mha_cfg = config(n_kv_heads=G), config()
        p = f64(mha.init(gqa_cfg, rng))
        # the equivalent MHA repeats each key/value head for the H/G query heads it serves
        D, R = gqa_cfg.d_head, 4 // G

        def repeat(W):
            return np.concatenate([W[..., (h // R) * D:(h // R + 1) * D] for h in range(4)], axis=-1)

        p_mha = dict(p, W_K=repeat(p["W_K"]), W_V=repeat(p["W_V"]), b_K=repeat(p["b_K"]), b_V=repeat(p["b_V"]))
        assert np.allclose(mha.forward(p, x, gqa_cfg, pos, positional=registry.chosen("positional", gqa_cfg))[0], mha.forward(p_mha, x, mha_cfg, pos, positional=registry.chosen("positional", mha_cfg))[0])


@pytest.mark.parametrize("kw", VARIANTS)
def test_causality_future_tokens_never_change_the_past(kw):
    cfg = config(**kw)
    rng = np.random.default_rng(3)
    params = mha.init(cfg, rng)
    x = rng.normal(size=(1, 8, 16)).astype(np.float32)
    x2 = x.copy()
    x2[:, 5:] = rng.normal(size=(1, 3, 16))
    y1, _ = mha.forward(params, x, cfg, np.arange(8), positional=registry.chosen("positional", cfg))
    y2, _ = mha.forward(params, x2, cfg, np.arange(8), positional=registry.chosen("positional", cfg))
    assert np.array_equal(y1[:, :5], y2[:, :5]) and not np.allclose(y1[:, 5:], y2[:, 5:])


@pytest.mark.parametrize("kw", VARIANTS)
def test_kv_cache_decoding_equals_full_forward(kw):
    cfg = config(**kw)
    rng = np.random.default_rng(4)
    params = mha.init(cfg, rng)
    x = rng.normal(size=(2, 9, 16)).astype(np.float32)
    full, _ = mha.forward(params, x, cfg, np.arange(9), positional=registry.chosen("positional", cfg))
    cache = mha.KVCache(1, 2, 12, cfg.kv_heads, cfg.d_head)
    pieces = [mha.forward(params, x[:, :4], cfg, np.arange(4), kv_cache=cache, positional=registry.chosen("positional", cfg))[0]]  # prefill
    for t in range(4, 9):  # then one token at a time
        pieces.append(mha.forward(params, x[:, t:t + 1], cfg, np.arange(t, t + 1), kv_cache=cache, positional=registry.chosen("positional", cfg))[0])
    assert np.allclose(np.concatenate(pieces, axis=1), full, atol=1e-6)
    assert cache.length == 9
    assert cache.nbytes == 9 * 2 * 2 * cfg.kv_heads * cfg.d_head * 4  # positions * (k and v) * batch * G * D * 4 B


def test_kv_cache_limits_and_reset():
    cache = mha.KVCache(1, 1, 4, 1, 2)
    cache.append(0, np.zeros((1, 1, 3, 2)), np.zeros((1, 1, 3, 2)))
    with pytest.raises(ValueError, match="3 are used: 2 more do not fit"):
        cache.append(0, np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)))
    cache.reset()
    assert cache.length == 0 and cache.nbytes == 0 and cache.capacity_nbytes == 2 * 4 * 2 * 4


def test_padding_mask_hides_keys():
    cfg = config()
    rng = np.random.default_rng(5)
    params = mha.init(cfg, rng)
    x = rng.normal(size=(1, 5, 16)).astype(np.float32)
    mask = np.array([[False, False, True, True, True]])  # two pad tokens on the left
    y, cache = mha.forward(params, x, cfg, np.arange(5), padding_mask=mask, positional=registry.chosen("positional", cfg))
    x2 = x.copy()
    x2[:, :2] = 100.0  # changing the padding changes nothing for real tokens
    y2, _ = mha.forward(params, x2, cfg, np.arange(5), padding_mask=mask, positional=registry.chosen("positional", cfg))
    assert np.allclose(y[:, 2:], y2[:, 2:], atol=1e-6)
    assert np.all(cache["hook_pattern"][..., :2][:, :, 2:] == 0)
    assert np.all(np.isfinite(y))
    with pytest.raises(ValueError, match="padding_mask must be a bool array of shape"):
        mha.forward(params, x, cfg, np.arange(5), padding_mask=np.ones((1, 4), bool), positional=registry.chosen("positional", cfg))


def test_float32_in_float32_out_and_no_cache_when_not_needed():
    cfg = config(positional="rope")
    params = mha.init(cfg, np.random.default_rng(0))
    x = np.ones((1, 3, 16), np.float32)
    y, cache = mha.forward(params, x, cfg, np.arange(3), need_cache=False, positional=registry.chosen("positional", cfg))
    assert y.dtype == np.float32 and cache is None


def test_backward_refuses_a_kv_cache_forward():
    cfg = config()
    params = mha.init(cfg, np.random.default_rng(0))
    kv = mha.KVCache(1, 1, 12, 4, 4)
    _, cache = mha.forward(params, np.ones((1, 2, 16), np.float32), cfg, np.arange(2), kv_cache=kv, need_cache=True, positional=registry.chosen("positional", cfg))
    with pytest.raises(ValueError, match="KV cache"):
        mha.backward(params, cache, np.ones((1, 2, 16), np.float32))


def test_causal_mask_follows_positions_that_do_not_start_at_zero():
    cfg = config()
    params = mha.init(cfg, np.random.default_rng(6))
    x = np.random.default_rng(7).normal(size=(1, 6, 16)).astype(np.float32)
    _, cache = mha.forward(params, x, cfg, np.arange(3, 9), positional=registry.chosen("positional", cfg))
    pattern = cache["hook_pattern"][0]
    assert np.all(np.triu(np.ones((6, 6)), 1)[None] * pattern == 0)  # nothing above the diagonal
    # and the output does not depend on where the window starts when positions are learned elsewhere
    assert np.allclose(mha.forward(params, x, cfg, np.arange(6), positional=registry.chosen("positional", cfg))[0], mha.forward(params, x, cfg, np.arange(3, 9), positional=registry.chosen("positional", cfg))[0], atol=1e-6)
