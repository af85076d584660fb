"""Stage 5: the MLP variants, the output head, and sampling."""

import math

import numpy as np
import pytest

from minitransformer.feedforward import mlp, output
from minitransformer.core import nn
from minitransformer.core import registry
from minitransformer.core.config import ModelConfig
from minitransformer.kit import gradcheck

CASES = [(ffn, bias) for ffn in mlp.KINDS for bias in (True, False)]


def small_config(ffn="gelu", bias=True, **kw):
    return ModelConfig(vocab_size=11, d_model=8, n_heads=2, n_layers=2, d_ff=12, ffn=ffn, bias=bias, **kw)


def random_params(params, rng, scale=0.5):
    """float64 copies with every entry random (biases too), so no gradient is trivially zero."""
    return {k: rng.normal(size=v.shape) * scale for k, v in params.items()}


# --------------------------------------------------------------------------- init
@pytest.mark.parametrize("ffn, bias", CASES)
def test_init_shapes_dtypes_and_keys(ffn, bias):
    cfg = small_config(ffn, bias)
    params = mlp.init(cfg, np.random.default_rng(0))
    expected = {"W_in": (8, 12), "W_out": (12, 8)}
    if ffn == "swiglu":
        expected["W_gate"] = (8, 12)
    if bias:
        expected.update({"b_in": (12,), "b_out": (8,)})
        if ffn == "swiglu":
            expected["b_gate"] = (12,)
    assert {k: v.shape for k, v in params.items()} == expected
    assert all(v.dtype == np.float32 for v in params.values())
    assert all(not params[k].any() for k in params if k.startswith("b_"))


def test_init_scales_the_residual_projection():
    cfg = ModelConfig(d_model=256, d_ff=1024, n_layers=8, n_heads=4, init_std=0.05)
    params = mlp.init(cfg, np.random.default_rng(0))
    assert params["W_in"].std() == pytest.approx(0.05, rel=0.02)
    assert params["W_out"].std() == pytest.approx(0.05 / math.sqrt(16), rel=0.02)


def test_init_same_seed_same_weights():
    cfg = small_config("swiglu")
    a, b = mlp.init(cfg, np.random.default_rng(3)), mlp.init(cfg, np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_mlp_kinds_are_the_registered_ffn_variants():
    assert set(mlp.KINDS) <= set(registry.names("ffn"))
    assert mlp.KINDS == ("gelu", "swiglu")


# --------------------------------------------------------------------------- MLP forward: known answers
def test_gelu_mlp_with_identity_weights_is_gelu():
    cfg = ModelConfig(d_model=4, d_ff=4, n_heads=2, ffn="gelu", bias=True)
    params = {"W_in": np.eye(4, dtype=np.float32), "b_in": np.zeros(4, np.float32),
              "W_out": np.eye(4, dtype=np.float32), "b_out": np.zeros(4, np.float32)}
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    y, _ = mlp.forward(params, x, cfg)
    np.testing.assert_allclose(y, nn.gelu_forward(x)[0], rtol=1e-6)
    # a number worked by hand: gelu(1) = 0.5 (1 + tanh(sqrt(2/pi) 1.044715)) = 0.841192
    y1, _ = mlp.forward(params, np.ones((1, 1, 4), np.float32), cfg)
    np.testing.assert_allclose(y1, 0.841192, rtol=1e-5)


def test_swiglu_with_identity_weights_is_silu_times_x():
    cfg = ModelConfig(d_model=4, d_ff=4, n_heads=2, ffn="swiglu", bias=False)
    params = {k: np.eye(4, dtype=np.float32) for k in ("W_gate", "W_in", "W_out")}
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    y, cache = mlp.forward(params, x, cfg)
    np.testing.assert_allclose(y, x * x / (1.0 + np.exp(-x)), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(cache["hook_pre"], x)
    np.testing.assert_array_equal(cache["hook_pre_linear"], x)
    # silu(1) * 1 = 1 / (1 + e^-1)
    y1, _ = mlp.forward(params, np.ones((1, 1, 4), np.float32), cfg)
    np.testing.assert_allclose(y1, 0.7310586, rtol=1e-6)


def test_biases_are_added():
    cfg = ModelConfig(d_model=4, d_ff=4, n_heads=2, ffn="gelu", bias=True)
    params = {"W_in": np.zeros((4, 4), np.float32), "b_in": np.full(4, 1.0, np.float32),
              "W_out": np.eye(4, dtype=np.float32), "b_out": np.arange(4, dtype=np.float32)}
    y, _ = mlp.forward(params, np.ones((1, 2, 4), np.float32), cfg)
    np.testing.assert_allclose(y, np.broadcast_to(0.841192 + np.arange(4), (1, 2, 4)), rtol=1e-5)


# --------------------------------------------------------------------------- MLP forward: contract
@pytest.mark.parametrize("ffn, bias", CASES)
def test_forward_float32_in_float32_out_and_cache(ffn, bias):
    cfg = small_config(ffn, bias)
    params = mlp.init(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(2, 5, 8)).astype(np.float32)
    y, cache = mlp.forward(params, x, cfg)
    assert y.shape == (2, 5, 8) and y.dtype == np.float32
    names = {"hook_pre", "hook_post"} | ({"hook_pre_linear"} if ffn == "swiglu" else set())
    assert names <= set(cache)
    for name in names:
        assert cache[name].shape == (2, 5, 12) and cache[name].dtype == np.float32
    dx, grads = mlp.backward(params, cache, np.ones_like(y))
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    assert set(grads) == set(params)
    assert all(grads[k].shape == params[k].shape for k in params)


@pytest.mark.parametrize("ffn", mlp.KINDS)
def test_no_cache_when_not_needed(ffn):
    cfg = small_config(ffn)
    params = mlp.init(cfg, np.random.default_rng(0))
    x = np.ones((1, 2, 8), np.float32)
    y, cache = mlp.forward(params, x, cfg, need_cache=False)
    assert cache is None
    with nn.no_grad():
        y2, cache2 = mlp.forward(params, x, cfg)
        assert cache2 is None
        _, forced = mlp.forward(params, x, cfg, need_cache=True)
        assert forced is not None
    np.testing.assert_array_equal(y, y2)
    with pytest.raises(ValueError, match="need_cache=True"):
        mlp.backward(params, None, y)


def test_forward_rejects_wrong_width_and_init_rejects_unknown_kinds():
    cfg = small_config("gelu")
    params = mlp.init(cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="d_model=8"):
        mlp.forward(params, np.ones((1, 2, 5), np.float32), cfg)
    with pytest.raises(ValueError, match="'relu' is not one of 'gelu', 'swiglu'"):
        mlp.init(cfg, np.random.default_rng(0), kind="relu")


# --------------------------------------------------------------------------- MLP backward
@pytest.mark.parametrize("ffn, bias", CASES)
def test_backward_gradcheck(ffn, bias):
    rng = np.random.default_rng(0)
    cfg = small_config(ffn, bias)
    params = random_params(mlp.init(cfg, rng), rng)
    x = rng.normal(size=(2, 3, 8))
    y, cache = mlp.forward(params, x, cfg, need_cache=True)
    dy = rng.normal(size=y.shape)
    dx, grads = mlp.backward(params, cache, dy)
    assert set(grads) == set(params)

    def fn(a):
        return mlp.forward({k: a[k] for k in params}, a["x"], cfg, need_cache=False)[0]

    report = gradcheck(fn, {**params, "x": x}, {**grads, "x": dx}, dy)
    assert report.ok, str(report)


def test_gradcheck_catches_a_wrong_backward():
    """The check above can fail: a SwiGLU backward that forgets the gate branch of dx is caught."""
    rng = np.random.default_rng(0)
    cfg = small_config("swiglu", False)
    params = random_params(mlp.init(cfg, rng), rng)
    x = rng.normal(size=(2, 3, 8))
    y, cache = mlp.forward(params, x, cfg, need_cache=True)
    dy = rng.normal(size=y.shape)
    dx_linear_only, _ = mlp.backward({**params, "W_gate": 0 * params["W_gate"]}, cache, dy)  # gate branch of dx is 0
    report = gradcheck(lambda a: mlp.forward(params, a["x"], cfg, need_cache=False)[0], {"x": x}, {"x": dx_linear_only}, dy)
    assert not report.ok


# --------------------------------------------------------------------------- output head
def test_head_init():
    assert output.head_init(small_config(tie_embeddings=True), np.random.default_rng(0)) == {}
    params = output.head_init(small_config(tie_embeddings=False, init_std=0.5), np.random.default_rng(0))
    assert list(params) == ["W_U"] and params["W_U"].shape == (8, 11) and params["W_U"].dtype == np.float32
    assert 0.3 < params["W_U"].std() < 0.7


def test_head_known_answers():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 8)).astype(np.float32)
    W_E = rng.normal(size=(11, 8)).astype(np.float32)
    logits, cache = output.head_forward({}, x, W_E=W_E)
    assert logits.shape == (2, 3, 11) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, np.einsum("btc,vc->btv", x, W_E), rtol=1e-5, atol=1e-5)
    W_U = rng.normal(size=(8, 11)).astype(np.float32)
    logits, _ = output.head_forward({"W_U": W_U}, x)
    np.testing.assert_allclose(logits, np.einsum("btc,cv->btv", x, W_U), rtol=1e-5, atol=1e-5)
    # a tied head scores token v by the dot product with its own embedding row
    one_hot = np.eye(11, 8, dtype=np.float32)[None, :3]  # (1, 3, 8): rows 0..2 of I
    np.testing.assert_array_equal(output.head_forward({}, one_hot, W_E=W_E)[0][0], W_E[:, :3].T)


def test_head_cache_and_errors():
    x, W_E = np.ones((1, 2, 8), np.float32), np.ones((11, 8), np.float32)
    assert output.head_forward({}, x, W_E=W_E, need_cache=False)[1] is None
    with nn.no_grad():
        assert output.head_forward({}, x, W_E=W_E)[1] is None
    with pytest.raises(ValueError, match="pass W_E"):
        output.head_forward({}, x)
    with pytest.raises(ValueError, match="untied"):
        output.head_forward({"W_U": np.ones((8, 11), np.float32)}, x, W_E=W_E)
    with pytest.raises(ValueError, match="d_model=8"):
        output.head_forward({}, np.ones((1, 2, 5), np.float32), W_E=W_E)
    with pytest.raises(ValueError, match="need_cache=True"):
        output.head_backward({}, None, np.ones((1, 2, 11)), W_E=W_E)


def test_head_backward_untied_gradcheck():
    rng = np.random.default_rng(1)
    params = {"W_U": rng.normal(size=(8, 11))}
    x = rng.normal(size=(2, 3, 8))
    logits, cache = output.head_forward(params, x, need_cache=True)
    dlogits = rng.normal(size=logits.shape)
    dx, grads = output.head_backward(params, cache, dlogits)
    assert set(grads) == {"W_U"}
    report = gradcheck(lambda a: output.head_forward({"W_U": a["W_U"]}, a["x"], need_cache=False)[0],
                       {"W_U": params["W_U"], "x": x}, {"W_U": grads["W_U"], "x": dx}, dlogits)
    assert report.ok, str(report)


def test_head_backward_tied_gradcheck():
    rng = np.random.default_rng(2)
    W_E, x = rng.normal(size=(11, 8)), rng.normal(size=(2, 3, 8))
    logits, cache = output.head_forward({}, x, W_E=W_E, need_cache=True)
    dlogits = rng.normal(size=logits.shape)
    dx, grads = output.head_backward({}, cache, dlogits, W_E=W_E)
    assert set(grads) == {"W_E"} and grads["W_E"].shape == (11, 8)
    report = gradcheck(lambda a: output.head_forward({}, a["x"], W_E=a["W_E"], need_cache=False)[0],
                       {"W_E": W_E, "x": x}, {"W_E": grads["W_E"], "x": dx}, dlogits)
    assert report.ok, str(report)


# --------------------------------------------------------------------------- probabilities
P4 = np.array([0.5, 0.3, 0.15, 0.05])
LOGITS4 = np.log(P4)[None].astype(np.float32)  # (1, 4), softmax gives P4 back


def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_probabilities_plain_is_softmax():
    p = output.probabilities(LOGITS4)
    assert p.dtype == np.float32
    np.testing.assert_allclose(p, P4[None], rtol=1e-5)


def test_probabilities_top_k_and_top_p_known_answers():
    np.testing.assert_allclose(output.probabilities(LOGITS4, top_k=2), [[0.625, 0.375, 0, 0]], rtol=1e-5)
    np.testing.assert_allclose(output.probabilities(LOGITS4, top_p=0.7), [[0.625, 0.375, 0, 0]], rtol=1e-5)
    np.testing.assert_allclose(output.probabilities(LOGITS4, top_p=0.85), [np.r_[P4[:3] / 0.95, 0]], rtol=1e-5)
    np.testing.assert_allclose(output.probabilities(LOGITS4, top_p=1e-6), [[1, 0, 0, 0]])
    np.testing.assert_allclose(output.probabilities(LOGITS4, top_p=1.0), P4[None], rtol=1e-5)
    # top-k comes first: it renormalises to 0.526, 0.316, 0.158, so the top token alone reaches 0.51
    np.testing.assert_allclose(output.probabilities(LOGITS4, top_p=0.51), [[0.625, 0.375, 0, 0]], rtol=1e-5)
    np.testing.assert_allclose(output.probabilities(LOGITS4, top_k=3, top_p=0.51), [[1, 0, 0, 0]])


def test_nucleus_is_the_smallest_set_that_reaches_top_p():
    flat = np.zeros((1, 4), np.float32)  # exactly 0.25 each, so the cumulative masses are exact
    np.testing.assert_array_equal(output.probabilities(flat, top_p=0.5), [[0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(output.probabilities(flat, top_p=0.51), [[1 / 3, 1 / 3, 1 / 3, 0]], rtol=1e-6)


def test_probabilities_sum_to_one_and_vanish_outside_the_filter():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 50)).astype(np.float32) * 3
    for kw in ({}, {"top_k": 5}, {"top_p": 0.6}, {"top_k": 10, "top_p": 0.9}, {"temperature": 0.3, "top_p": 0.5}):
        p = output.probabilities(logits, **kw)
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-5)
        assert (p >= 0).all()
    p = output.probabilities(logits, top_k=5)
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    assert ((p > 0).sum(axis=-1) == 5).all()
    assert (np.take_along_axis(p, top5, axis=-1) > 0).all()
    # nucleus: the kept tokens are the most likely ones, and their mass just reaches top_p
    full, p = output.probabilities(logits), output.probabilities(logits, top_p=0.6)
    kept_mass = np.where(p > 0, full, 0).sum(axis=-1)
    smallest_kept = np.where(p > 0, full, np.inf).min(axis=-1)
    assert (kept_mass >= 0.6 - 1e-6).all()
    assert (kept_mass - smallest_kept < 0.6).all()  # without the least likely kept token it would fall short
    assert (np.where(p > 0, -np.inf, full).max(axis=-1) <= smallest_kept).all()


def test_temperature_zero_is_one_hot_and_temperature_orders_entropy():
    np.testing.assert_array_equal(output.probabilities(LOGITS4, temperature=0), [[1, 0, 0, 0]])
    temps = [0.01, 0.1, 0.5, 1.0, 2.0, 10.0, 1000.0]
    entropies = [entropy(output.probabilities(LOGITS4, temperature=t)[0]) for t in temps]
    assert all(a < b for a, b in zip(entropies, entropies[1:])), entropies
    assert entropies[0] < 1e-6 and entropies[-1] == pytest.approx(math.log(4), abs=1e-3)


def test_tiny_temperature_is_not_nan():
    p = output.probabilities(np.array([[1.0, 2.0, 3.0]], np.float32), temperature=1e-300)
    np.testing.assert_array_equal(p, [[0, 0, 1]])


# --------------------------------------------------------------------------- sample
def test_greedy_equals_argmax_without_rng():
    logits = np.random.default_rng(0).normal(size=(7, 30)).astype(np.float32)
    ids = output.sample(logits, None, temperature=0)
    assert ids.dtype == np.int64 and ids.shape == (7,)
    np.testing.assert_array_equal(ids, logits.argmax(axis=-1))


def test_top_k_one_and_tiny_top_p_are_argmax_for_every_seed():
    logits = np.random.default_rng(0).normal(size=(16, 30)).astype(np.float32)
    for seed in range(20):
        rng = np.random.default_rng(seed)
        np.testing.assert_array_equal(output.sample(logits, rng, top_k=1, temperature=5.0), logits.argmax(axis=-1))
        np.testing.assert_array_equal(output.sample(logits, rng, top_p=1e-9, temperature=5.0), logits.argmax(axis=-1))


def test_same_seed_same_samples_different_seeds_differ():
    flat = np.zeros((50, 100), np.float32)
    a = output.sample(flat, np.random.default_rng(7))
    b = output.sample(flat, np.random.default_rng(7))
    c = output.sample(flat, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() < 100


@pytest.mark.parametrize("kw", [{}, {"temperature": 0.7}, {"temperature": 2.0, "top_k": 3}, {"top_p": 0.85}])
def test_empirical_frequencies_match_probabilities(kw):
    B = 20000
    logits = np.repeat(LOGITS4, B, axis=0)  # (B, 4): one draw per row
    ids = output.sample(logits, np.random.default_rng(0), **kw)
    freq = np.bincount(ids, minlength=4) / B
    np.testing.assert_allclose(freq, output.probabilities(LOGITS4, **kw)[0], atol=0.02)
    p = output.probabilities(LOGITS4, **kw)[0]
    assert (freq[p == 0] == 0).all()  # a filtered-out token is never drawn


class FixedDraw(np.random.Generator):
    """A generator whose uniform draws are all ``u``, to test the edges of the inverse CDF."""

    def __init__(self, u):
        super().__init__(np.random.PCG64(0))
        self.u = u

    def random(self, size=None, dtype=np.float64, out=None):
        return np.full(size, self.u)


@pytest.mark.parametrize("u, expected", [(0.0, 1), (0.4999, 1), (0.5, 2), (np.nextafter(1.0, 0.0), 2)])
def test_inverse_cdf_edges_skip_zero_probability_tokens(u, expected):
    logits = np.array([[-np.inf, 0.0, 0.0, -np.inf]], np.float32)  # probs 0, 0.5, 0.5, 0
    np.testing.assert_array_equal(output.sample(logits, FixedDraw(u)), [expected])


def test_zero_probability_tokens_are_never_drawn():
    logits = np.array([[-np.inf, 0.0, -np.inf, 0.0, -np.inf]], np.float32).repeat(5000, axis=0)
    ids = output.sample(logits, np.random.default_rng(0))
    assert set(np.unique(ids)) == {1, 3}


@pytest.mark.parametrize("kw, match", [
    ({"temperature": -0.5}, "temperature=-0.5 must be"),
    ({"temperature": float("nan")}, "temperature=nan must be"),
    ({"top_k": 0}, r"top_k=0 must be an int in 1\.\.4"),
    ({"top_k": 5}, r"top_k=5 must be an int in 1\.\.4"),
    ({"top_k": 2.5}, "top_k=2.5 must be an int"),
    ({"top_p": 0.0}, r"top_p=0.0 must be a number in \(0, 1\]"),
    ({"top_p": 1.5}, r"top_p=1.5 must be a number in \(0, 1\]"),
])
def test_bad_sampling_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        output.probabilities(LOGITS4, **kw)
    with pytest.raises(ValueError, match=match):
        output.sample(LOGITS4, np.random.default_rng(0), **kw)


def test_sample_needs_rng_and_2d_logits():
    with pytest.raises(ValueError, match="default_rng"):
        output.sample(LOGITS4, None, temperature=1.0)
    with pytest.raises(ValueError, match="default_rng"):
        output.sample(LOGITS4, np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"logits\[:, -1, :\]"):
        output.sample(LOGITS4[None], np.random.default_rng(0))
    with pytest.raises(ValueError, match="float array"):
        output.probabilities(np.array([[1, 2, 3]]))
