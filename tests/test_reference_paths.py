"""The reference paths (the equations, written out) and the fast paths compute the same numbers.

Forward and backward in float64 with random upstream gradients, over the matrix that
reaches every path: learned and rotary positions; n_kv_heads = n_heads, 2 and 1; a KV
cache filled by a prefill and then one token at a time; a positional variant with a
score bias; padding masks; MLA with and without query compression, with and without a
RoPE channel. Then the whole model, with the reference selected by the config.
"""

import types

import numpy as np
import pytest

from minitransformer.core.tree import to_float64
from minitransformer import GPT, ModelConfig
from minitransformer.attention import mha, mha_reference, mla, mla_reference
from minitransformer.attention.kv_cache import KVCache, LatentKVCache
from minitransformer.core import nn, registry
from minitransformer.core.tree import flatten
from minitransformer.kit import gradcheck

TIGHT = dict(rtol=1e-10, atol=1e-12)

MHA_CASES = [dict(positional=p, n_kv_heads=g, rope_style=s) for p, s in (("learned", "half"), ("rope", "half"),
                                                                          ("rope", "interleaved"))
             for g in (None, 2, 1)] + [dict(positional="sinusoidal", n_kv_heads=2, bias=False)]
MLA_CASES = [dict(positional="rope", d_latent=12, d_rope=4),
             dict(positional="rope", d_latent=12, d_latent_q=10, d_rope=4, softmax_scale_mult=1.3),
             dict(positional="none", d_latent=12),
             dict(positional="none", d_latent=12, d_latent_q=10, latent_norm=False)]


def mha_config(**kw):
    return ModelConfig(**{**dict(vocab_size=32, context_length=16, d_model=16, n_heads=4, n_layers=2), **kw})


def mla_config(**kw):
    return mha_config(attention="mla", bias=False, **kw)


def perturbed(params, rng):
    """float64 parameters away from their init (biases non-zero, norm gains not one)."""
    return {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape) for k, v in params.items()}


def both(fast, ref, params, x, cfg, positional, dy=None, **kw):
    """Run the fast and the reference path on the same input; check y, the published names and backward."""
    y_f, c_f = fast.forward(params, x, cfg, np.arange(x.shape[1]), positional=positional, record=True, **kw)
    y_r, c_r = ref.forward(params, x, cfg, np.arange(x.shape[1]), positional=positional, record=True, **kw)
    np.testing.assert_allclose(y_r, y_f, **TIGHT)
    published = sorted(k for k in c_f if k.startswith("hook_"))
    assert published == sorted(k for k in c_r if k.startswith("hook_"))
    for name in published:
        np.testing.assert_allclose(c_r[name], c_f[name], err_msg=name, **TIGHT)  # -inf where masked, in both
    dy = np.random.default_rng(7).normal(size=y_f.shape) if dy is None else dy
    dx_f, g_f = fast.backward(params, c_f, dy)
    dx_r, g_r = ref.backward(params, c_r, dy)
    np.testing.assert_allclose(dx_r, dx_f, **TIGHT)
    assert sorted(g_r) == sorted(g_f) == sorted(params)
    for k in g_f:
        np.testing.assert_allclose(g_r[k], g_f[k], err_msg=k, **TIGHT)
    return c_f, c_r


# --------------------------------------------------------------------------- multi-head / grouped / multi-query
@pytest.mark.parametrize("kw", MHA_CASES, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_mha_reference_equals_fast_forward_and_backward(kw):
    cfg = mha_config(**kw)
    rng = np.random.default_rng(0)
    params = perturbed(mha.init(cfg, rng), rng)
    x = rng.normal(size=(2, 7, cfg.d_model))
    both(mha, mha_reference, params, x, cfg, registry.chosen("positional", cfg))


def alibi_like(q_positions, k_positions, config):
    """A score bias: head h penalises distance with slope 2^-(h+1) (the shape of ALiBi)."""
    slopes = 2.0 ** -np.arange(1, config.n_heads + 1)  # (H,)
    return -slopes[:, None, None] * np.abs(q_positions[:, None] - k_positions[None, :])  # (H, T, S)


@pytest.mark.parametrize("n_kv_heads", [None, 1])
def test_mha_reference_applies_a_score_bias_as_the_fast_path_does(n_kv_heads):
    cfg = mha_config(positional="none", n_kv_heads=n_kv_heads)
    rng = np.random.default_rng(1)
    params = perturbed(mha.init(cfg, rng), rng)
    x = rng.normal(size=(2, 6, cfg.d_model))
    biased = types.SimpleNamespace(name="alibi_like", rotate=None, rotate_backward=None, score_bias=alibi_like)
    c_f, c_r = both(mha, mha_reference, params, x, cfg, biased)
    plain = mha_reference.forward(params, x, cfg, np.arange(6), need_cache=True)[1]["hook_pattern"]
    assert not np.allclose(c_r["hook_pattern"], plain, atol=1e-3)  # the bias did change what is retrieved


def test_mha_reference_with_a_padding_mask_equals_fast():
    cfg = mha_config(positional="rope", n_kv_heads=2)
    rng = np.random.default_rng(2)
    params = perturbed(mha.init(cfg, rng), rng)
    x = rng.normal(size=(2, 6, cfg.d_model))
    padding = np.ones((2, 6), bool)
    padding[1, :2] = False  # left padding: queries 0 and 1 of row 1 see no real key at all
    c_f, c_r = both(mha, mha_reference, params, x, cfg, registry.chosen("positional", cfg), padding_mask=padding)
    assert np.all(c_r["hook_pattern"][1, :, :2] == 0.0)  # such a query retrieves nothing
    assert np.all(c_r["hook_pattern"][1, :, 2:, :2] == 0.0)  # and nobody reads a padding key


@pytest.mark.parametrize("kw", [dict(positional="learned"), dict(positional="rope", n_kv_heads=2),
                                dict(positional="rope", n_kv_heads=1)])
def test_mha_reference_decodes_with_a_kv_cache_like_the_fast_path(kw):
    cfg = mha_config(**kw)
    rng = np.random.default_rng(3)
    params = perturbed(mha.init(cfg, rng), rng)
    x = rng.normal(size=(2, 7, cfg.d_model))
    rope = registry.chosen("positional", cfg)
    caches = {m: KVCache(1, 2, 16, cfg.kv_heads, cfg.d_head, dtype=np.float64) for m in (mha, mha_reference)}
    steps = [(0, 3)] + [(t, t + 1) for t in range(3, 7)]  # a prefill of 3, then one token at a time
    for a, b in steps:
        ys = [m.forward(params, x[:, a:b], cfg, np.arange(a, b), kv_cache=caches[m], positional=rope)[0]
              for m in (mha, mha_reference)]
        np.testing.assert_allclose(ys[1], ys[0], **TIGHT)
        full = mha_reference.forward(params, x[:, :b], cfg, np.arange(b), positional=rope)[0][:, a:b]
        np.testing.assert_allclose(ys[1], full, **TIGHT)  # decoding equals recomputing the whole prefix
    np.testing.assert_allclose(caches[mha_reference].k[0], caches[mha].k[0], **TIGHT)  # the same index stored


def test_mha_reference_refuses_backward_after_kv_cache_decoding():
    cfg = mha_config()
    params = perturbed(mha.init(cfg, np.random.default_rng(0)), np.random.default_rng(1))
    cache = KVCache(1, 1, 16, cfg.kv_heads, cfg.d_head, dtype=np.float64)
    y, c = mha_reference.forward(params, np.ones((1, 2, 16)), cfg, np.arange(2), kv_cache=cache, need_cache=True)
    with pytest.raises(ValueError, match="KV cache"):
        mha_reference.backward(params, c, np.ones_like(y))


def test_the_reference_calls_hooks_at_the_same_points():
    cfg = mha_config(n_kv_heads=2)
    rng = np.random.default_rng(4)
    params = perturbed(mha.init(cfg, rng), rng)
    x = rng.normal(size=(1, 5, cfg.d_model))

    def ablate_head_1(name, a):
        if name == "hook_z":
            a = a.copy()
            a[:, :, 1] = 0.0  # (B, T, H, D)
        return a

    y_f = mha.forward(params, x, cfg, np.arange(5), hook=ablate_head_1)[0]
    y_r = mha_reference.forward(params, x, cfg, np.arange(5), hook=ablate_head_1)[0]
    np.testing.assert_allclose(y_r, y_f, **TIGHT)
    assert not np.allclose(y_r, mha_reference.forward(params, x, cfg, np.arange(5))[0])


def test_the_reference_keeps_float32_and_nothing_under_no_grad():
    cfg = mha_config(positional="rope")
    params = mha.init(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(1, 4, 16)).astype(np.float32)
    y, cache = mha_reference.forward(params, x, cfg, np.arange(4), positional=registry.chosen("positional", cfg))
    assert y.dtype == np.float32 and cache["hook_pattern"].dtype == np.float32
    dx, grads = mha_reference.backward(params, cache, np.ones_like(y))
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    with nn.no_grad():
        assert mha_reference.forward(params, x, cfg, np.arange(4), positional=registry.chosen("positional", cfg))[1] is None


# --------------------------------------------------------------------------- multi-head latent attention
@pytest.mark.parametrize("kw", MLA_CASES, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_mla_reference_equals_the_naive_path_forward_and_backward(kw):
    cfg = mla_config(**kw)
    rng = np.random.default_rng(5)
    params = perturbed(mla.init(cfg, rng), rng)
    x = rng.normal(size=(2, 7, cfg.d_model))
    c_f, c_r = both(mla, mla_reference, params, x, cfg, registry.chosen("positional", cfg))
    assert ("hook_latent_q" in c_r) == bool(cfg.latent_q_dim)
    assert c_f["saved"].keys() != c_r["saved"].keys()  # backward scratch differs; the published names do not


@pytest.mark.parametrize("kw", MLA_CASES[:2])
def test_mla_reference_applies_a_score_bias(kw):
    cfg = mla_config(**kw)
    rng = np.random.default_rng(6)
    params = perturbed(mla.init(cfg, rng), rng)
    x = rng.normal(size=(1, 6, cfg.d_model))
    rope = registry.chosen("positional", cfg)
    biased = types.SimpleNamespace(name="rope_alibi", rotate=rope.rotate, rotate_backward=rope.rotate_backward,
                                   score_bias=alibi_like)
    both(mla, mla_reference, params, x, cfg, biased)


@pytest.mark.parametrize("kw", MLA_CASES[:3])
def test_mla_reference_decodes_with_the_latent_cache_like_both_fast_paths(kw):
    cfg = mla_config(**kw)
    rng = np.random.default_rng(8)
    params = perturbed(mla.init(cfg, rng), rng)
    x = rng.normal(size=(2, 7, cfg.d_model))
    rope = registry.chosen("positional", cfg)
    new = lambda: LatentKVCache(1, 2, 16, cfg.latent_dim, cfg.rope_dim, dtype=np.float64)  # noqa: E731
    runs = {"reference": (mla_reference, None, new()), "naive": (mla, "naive", new()), "absorbed": (mla, "absorbed", new())}
    for a, b in [(0, 3)] + [(t, t + 1) for t in range(3, 7)]:  # a prefill of 3, then one token at a time
        ys = {name: m.forward(params, x[:, a:b], cfg, np.arange(a, b), kv_cache=c, impl=impl, positional=rope)[0]
              for name, (m, impl, c) in runs.items()}
        np.testing.assert_allclose(ys["reference"], ys["naive"], **TIGHT)
        np.testing.assert_allclose(ys["reference"], ys["absorbed"], rtol=1e-9, atol=1e-11)  # absorption regroups sums
    np.testing.assert_allclose(runs["reference"][2].kv[0], runs["naive"][2].kv[0], **TIGHT)


def test_mla_reference_has_no_absorbed_path():
    cfg = mla_config(**MLA_CASES[0])
    params = mla.init(cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="consecutive positions"):
        mla_reference.forward(params, np.ones((1, 3, 16), np.float32), cfg, np.array([0, 2, 3]),
                              positional=registry.chosen("positional", cfg))
    with pytest.raises(ValueError, match="impl='naive'"):
        mla_reference.forward(params, np.ones((1, 2, 16), np.float32), cfg, np.arange(2), impl="absorbed",
                              positional=registry.chosen("positional", cfg))


@pytest.mark.parametrize("module, kw", [(mha_reference, dict(positional="rope", n_kv_heads=2)),
                                        (mla_reference, dict(attention="mla", bias=False, positional="rope",
                                                             d_latent=12, d_latent_q=10, d_rope=4))])
def test_each_reference_backward_passes_a_gradient_check_at_shifted_positions(module, kw):
    cfg = mha_config(**kw)
    rng = np.random.default_rng(12)
    params = perturbed(registry.get("attention", cfg.attention).init(cfg, rng), rng)
    x = rng.normal(size=(2, 5, cfg.d_model))
    pos, rope = np.arange(3, 8), registry.chosen("positional", cfg)  # not from 0: the angles follow the positions
    y, cache = module.forward(params, x, cfg, pos, positional=rope)
    dy = rng.normal(size=y.shape)
    dx, grads = module.backward(params, cache, dy)
    report = gradcheck(lambda a: module.forward({k: a[k] for k in params}, a["x"], cfg, pos, positional=rope)[0],
                       {"x": x, **params}, {"x": dx, **grads}, dy)
    assert report.ok, str(report)


# --------------------------------------------------------------------------- the mechanics
def test_softmax_backward_reference_is_the_jacobian_and_equals_the_fast_formula():
    rng = np.random.default_rng(9)
    x, dp = rng.normal(size=(3, 4, 5)), rng.normal(size=(3, 4, 5))
    p = nn.softmax(x)
    np.testing.assert_allclose(nn.softmax_backward_reference(dp, p), nn.softmax_backward(dp, p), **TIGHT)
    eps = 1e-6  # and both are the derivative: central differences of sum(dp * softmax(x))
    numeric = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        numeric[i] = ((dp * nn.softmax(x + e)).sum() - (dp * nn.softmax(x - e)).sum()) / (2 * eps)
    np.testing.assert_allclose(nn.softmax_backward_reference(dp, p), numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gelu_backward_reference_equals_the_fast_one_and_the_derivative(dtype):
    rng = np.random.default_rng(10)
    x = (rng.normal(size=(4, 33)) * 3).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    _, cache = nn.gelu_forward(x)
    ref = nn.gelu_backward_reference(dy, cache)
    assert ref.dtype == dtype
    tol = TIGHT if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ref, nn.gelu_backward(dy, cache), **tol)
    if dtype == np.float64:
        eps = 1e-6
        numeric = dy * (nn.gelu_forward(x + eps)[0] - nn.gelu_forward(x - eps)[0]) / (2 * eps)
        np.testing.assert_allclose(ref, numeric, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------- selection by name, end to end
@pytest.mark.parametrize("kw", [dict(positional="learned", n_kv_heads=2), dict(positional="rope", n_kv_heads=1),
                                dict(attention="mla", positional="rope", d_latent=12, d_latent_q=10, bias=False),
                                dict(attention="mla", positional="none", d_latent=12, bias=False)])
def test_the_model_gives_the_same_logits_and_gradients_with_the_reference_selected(kw):
    fast_cfg = mha_config(**kw)
    ref_cfg = fast_cfg.replace(attention_impl="reference")
    fast = GPT(fast_cfg, seed=0)
    fast.params = to_float64(fast.params)
    ref = GPT(ref_cfg, params=fast.params)
    assert registry.chosen("attention", ref_cfg).forward.__module__.endswith("_reference")
    ids = np.random.default_rng(11).integers(0, 32, size=(2, 9))
    np.testing.assert_allclose(ref.forward(ids), fast.forward(ids), **TIGHT)
    loss_f, loss_r = fast.loss(ids[:, :-1], ids[:, 1:]), ref.loss(ids[:, :-1], ids[:, 1:])
    assert loss_r == pytest.approx(loss_f, rel=1e-12)
    g_f, g_r = fast.backward(), ref.backward()
    for name, g in flatten(g_f).items():
        np.testing.assert_allclose(flatten(g_r)[name], g, err_msg=name, **TIGHT)
    # decoding with the variant's own KV cache gives the same tokens
    np.testing.assert_array_equal(ref.generate(ids[:1, :3], 5, seed=3), fast.generate(ids[:1, :3], 5, seed=3))
    # and the trace publishes the same names
    assert sorted(ref.run_with_cache(ids[:1])[1].keys()) == sorted(fast.run_with_cache(ids[:1])[1].keys())


def test_reference_for_gives_the_variant_with_its_reference_forward_and_backward():
    for name, module, fast in (("mha", mha_reference, mha), ("mla", mla_reference, mla)):
        ref = registry.reference_for("attention", name)
        assert (ref.forward, ref.backward, ref.init) == (module.forward, module.backward, fast.init)
        assert ref.extras["make_cache"] is registry.get("attention", name).extras["make_cache"]
        assert "reference" not in ref.extras


def test_a_variant_without_a_reference_is_a_clear_error():
    registry.register_attention("no_reference_here", init=mha.init, forward=mha.forward, backward=mha.backward)
    try:
        with pytest.raises(ValueError, match="no reference path; variants with one: 'mha', 'mla'"):
            mha_config(attention="no_reference_here", attention_impl="reference")
        assert mha_config(attention="no_reference_here").attention_impl == "fast"
    finally:
        registry.unregister("attention", "no_reference_here")
    with pytest.raises(ValueError, match="attention_impl='slow' is not valid; choose one of 'fast', 'reference'"):
        mha_config(attention_impl="slow")
    with pytest.raises(ValueError, match="reference= must be an object with forward"):
        registry.register_attention("bad_reference", init=mha.init, forward=mha.forward, reference=42)


def test_attention_impl_round_trips_through_the_config_dict():
    cfg = mla_config(positional="rope", d_latent=12, attention_impl="reference")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k != "attention_impl"}  # a config saved before the field
    assert ModelConfig.from_dict(old).attention_impl == "fast"
