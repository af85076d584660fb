"""The attention core tile by tile (attention/blockwise.py) against the formulas.

The tiles above the causal diagonal are skipped, so the sequences here are long enough
for several bands (more than `blockwise.BAND` positions), with grouped queries, rotary
positions, lengths that do not divide into bands, and a KV cache prefilled in chunks
(queries at the end of a longer run of keys).
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minitransformer import GPT, ModelConfig
from minitransformer.attention import blockwise, mha, mha_reference
from minitransformer.core import nn, registry
from minitransformer.core.tree import flatten, to_float64

TIGHT = dict(rtol=1e-10, atol=1e-12)


@given(T=st.integers(1, 300), extra=st.integers(0, 200))
@settings(max_examples=200, deadline=None)
def test_bands_cover_the_queries_and_skip_only_masked_keys(T, extra):
    S = T + extra  # T queries at the end of S keys (a prefill after `extra` cached positions)
    positions = np.arange(extra, S)
    bands = blockwise.causal_bands(positions, np.arange(S))
    assert bands[0][0] == 0 and bands[-1][1] == T
    assert all(b0[1] == b1[0] for b0, b1 in zip(bands, bands[1:]))
    for a, b, lo, s in bands:
        assert s == positions[b - 1] + 1  # the band's last query sees exactly the first s keys
        assert all(positions[t] < s for t in range(a, b))  # so every key at s or after is in the future
        assert lo == positions[a] + 1 and all(positions[t] >= lo - 1 for t in range(a, b))  # all see 0:lo
    if T >= 4 * blockwise.BAND:
        assert len(bands) == blockwise.BANDS


def plain(q, kT, v, mask, R):
    """softmax(q @ kT + mask) @ v and its backward, whole arrays, as the equations read."""
    B, G, RT, D = q.shape
    T = RT // R
    s = (q @ kT).reshape(B, G, R, T, -1) + mask  # (B, G, R, T, S)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    z = (p @ v[:, :, None]).reshape(B, G, RT, D)

    def backward(dz):
        dz5 = dz.reshape(B, G, R, T, D)
        dp = dz5 @ v[:, :, None].swapaxes(-1, -2)
        ds = p * (dp - (dp * p).sum(-1, keepdims=True))
        dq = (ds @ kT[:, :, None].swapaxes(-1, -2)).reshape(B, G, RT, D)
        dk = (ds.swapaxes(-1, -2) @ q.reshape(B, G, R, T, D)).sum(2)
        dv = (p.swapaxes(-1, -2) @ dz5).sum(2)
        return dq, dk, dv

    return z, backward


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("scale", [1.0, 30.0], ids=["small scores", "large scores"])
@pytest.mark.parametrize("B,G,R,T,extra", [(2, 2, 1, 100, 0), (1, 2, 3, 77, 0), (2, 1, 4, 129, 0),
                                           (1, 2, 2, 50, 40), (1, 1, 1, 33, 0), (3, 2, 2, 5, 0)])
def test_tiles_equal_the_whole_square(B, G, R, T, extra, scale, dtype):
    # small scores skip the row-max shift before exp and zero the masked keys after it; large ones
    # (|score| up to ~700) need the shift and take the mask as -inf. The tiles compute in base 2
    # (exp2 of the scores times log2 e); the plain formulas below use exp, in float64.
    rng = np.random.default_rng(T + extra)
    S, D = T + extra, 8
    positions, key_positions = np.arange(extra, S), np.arange(S)
    mask = np.where(key_positions[None, :] > positions[:, None], -np.inf, 0.0)  # (T, S)
    q, kT, v = rng.normal(size=(B, G, R * T, D)) * scale, rng.normal(size=(B, G, D, S)), rng.normal(size=(B, G, S, D))
    # float32: scores near 700 carry rounding of ~1e-4 in the exponent, which the softmax turns into
    # relative errors of that size, and the small gradients lose digits to cancellation
    tol = TIGHT if dtype == "float64" else dict(rtol=2e-4, atol=2e-5) if scale == 1 else dict(rtol=0, atol=None)
    bound = blockwise.score_bounds(q.reshape(B * G, R, T, D), kT.reshape(B * G, D, S)).max()
    assert (bound > blockwise.SAFE_EXP) == (scale > 1)  # both branches are taken
    bands = blockwise.causal_bands(positions, key_positions)
    z_ref, backward = plain(q, kT, v, mask, R)
    q_, kT_, v_, mask_ = (a.astype(dtype) for a in (q, kT, v, mask))
    z = blockwise.attend(q_, kT_, v_, mask_, bands)
    assert z.dtype == dtype
    np.testing.assert_allclose(z, z_ref, **close(tol, z_ref))
    dz = rng.normal(size=z.shape)
    delta = (dz * z_ref).reshape(B, G, R * T, D).sum(-1, keepdims=True)
    vT = np.ascontiguousarray(v_.swapaxes(-1, -2))
    grads = blockwise.attend_backward(q_, kT_, vT, dz.astype(dtype), delta.astype(dtype), mask_, bands)
    for got, want, name in zip(grads, backward(dz), ("dq", "dk", "dv")):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, err_msg=name, **close(tol, want))


def close(tol, want):
    """``tol``, with an ``atol`` of None filled in as 1e-3 of the largest |value| expected."""
    return tol if tol["atol"] is not None else dict(rtol=tol["rtol"], atol=1e-3 * float(np.abs(want).max()))


def long_config(**kw):
    return ModelConfig(**{**dict(vocab_size=40, context_length=160, d_model=32, n_heads=4, n_layers=2), **kw})


@pytest.mark.parametrize("kw", [dict(), dict(n_kv_heads=2), dict(n_kv_heads=1, positional="rope"),
                                dict(positional="rope", rope_style="interleaved", n_kv_heads=2)],
                         ids=["mha", "gqa", "mqa-rope", "gqa-rope-interleaved"])
def test_training_attention_equals_the_reference_over_several_bands(kw):
    cfg = long_config(**kw)
    rng = np.random.default_rng(1)
    params = {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape) for k, v in mha.init(cfg, rng).items()}
    positional = registry.chosen("positional", cfg)
    x = rng.normal(size=(2, 150, cfg.d_model))
    pos = np.arange(150)
    with nn.lean_caches():  # as GPT.loss runs it: the blockwise path, the pattern not kept
        y, cache = mha.forward(params, x, cfg, pos, need_cache=True, positional=positional)
    assert "hook_pattern" not in cache and len(cache["saved"]["bands"]) > 1
    y_r, cache_r = mha_reference.forward(params, x, cfg, pos, need_cache=True, positional=positional)
    np.testing.assert_allclose(y, y_r, **TIGHT)
    dy = rng.normal(size=y.shape)
    (dx, g), (dx_r, g_r) = mha.backward(params, cache, dy), mha_reference.backward(params, cache_r, dy)
    np.testing.assert_allclose(dx, dx_r, **TIGHT)
    for k in g:
        np.testing.assert_allclose(g[k], g_r[k], err_msg=k, **TIGHT)


def test_a_prefill_in_chunks_decodes_like_one_forward():
    cfg = long_config(n_kv_heads=2, positional="rope")
    model = GPT(cfg, seed=3, params=to_float64(GPT(cfg, seed=3).params))
    ids = np.random.default_rng(2).integers(0, cfg.vocab_size, (2, 140))
    whole = model.forward(ids)
    kv = model.new_kv_cache(batch_size=2)
    parts = [model.forward(ids[:, a:b], kv_cache=kv) for a, b in ((0, 45), (45, 110), (110, 111), (111, 140))]
    # the cache stores keys and values in float32: equal to its rounding (a wrong band is off by O(1))
    np.testing.assert_allclose(np.concatenate(parts, axis=1), whole, rtol=1e-5, atol=1e-6)


def test_the_whole_model_trains_as_the_reference_does():
    cfg = long_config(n_kv_heads=2)
    params = to_float64(GPT(cfg, seed=0).params)
    fast = GPT(cfg, params=params, threads=1)
    ref = GPT(ModelConfig(**{**cfg.to_dict(), "attention_impl": "reference"}), params=to_float64(params), threads=1)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, cfg.vocab_size, (2, 130)), rng.integers(0, cfg.vocab_size, (2, 130))
    assert fast.loss(x, y) == pytest.approx(ref.loss(x, y), rel=1e-12)
    a, b = flatten(fast.backward()), flatten(ref.backward())
    for k in a:
        np.testing.assert_allclose(a[k], b[k], err_msg=k, **TIGHT)


def test_band_masks_are_the_bands_rows_of_the_mask_and_mha_makes_them_once():
    # each band meeting the diagonal gets its rows of the mask over the keys it reads, flat, and the
    # matching keep-mask; mha builds them with the mask once per set of positions, read-only
    T = 4 * blockwise.BAND
    pos = np.arange(T)
    mask = np.where(pos[None, :] > pos[:, None], -np.inf, 0.0).astype(np.float32)
    bands = tuple(blockwise.causal_bands(pos, pos))
    masks = blockwise.band_masks(mask, bands)
    for (a, b, lo, s), pair in zip(bands, masks):
        np.testing.assert_array_equal(pair[0], mask[a:b, :s].reshape(-1))
        np.testing.assert_array_equal(pair[1], (mask[a:b, :s] == 0).reshape(-1))
    assert blockwise.band_masks(None, bands) == [None] * len(bands)
    keys, kept_mask, kept_bands, kept_masks = mha._causal_layout(pos.astype(np.int64).tobytes(), T, "<f4")
    assert mha._causal_layout(pos.astype(np.int64).tobytes(), T, "<f4")[3] is kept_masks  # made once
    np.testing.assert_array_equal(kept_mask, mask)
    assert kept_bands == bands and not kept_mask.flags.writeable
    for got, want in zip(kept_masks, masks):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
            assert not g.flags.writeable


def test_shifting_or_not_gives_the_same_softmax_when_scores_are_small():
    # the shift before exp2 only guards against overflow: with small scores both ways agree, and
    # needs_shift (what mha asks once and passes to both passes) says none is needed
    rng = np.random.default_rng(3)
    B, G, R, T, D = 2, 2, 2, 70, 8
    pos = np.arange(T)
    mask = np.where(pos[None, :] > pos[:, None], -np.inf, 0.0)
    q, kT, v = rng.normal(size=(B, G, R * T, D)), rng.normal(size=(B, G, D, T)), rng.normal(size=(B, G, T, D))
    bands = blockwise.causal_bands(pos, pos)
    assert not blockwise.needs_shift(q, kT) and blockwise.needs_shift(q * 30, kT)
    z = blockwise.attend(q, kT, v, mask, bands)
    np.testing.assert_allclose(blockwise.attend(q, kT, v, mask, bands, shift=True), z, **TIGHT)
    dz = rng.normal(size=z.shape)
    delta = (dz * z).sum(-1, keepdims=True)
    vT = np.ascontiguousarray(v.swapaxes(-1, -2))
    for got, want in zip(blockwise.attend_backward(q, kT, vT, dz, delta, mask, bands, shift=True),
                         blockwise.attend_backward(q, kT, vT, dz, delta, mask, bands)):
        np.testing.assert_allclose(got, want, **TIGHT)
