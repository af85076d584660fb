"""What training keeps for backward is lean, and the gradients are the same as from a full cache.

A training forward (inside `nn.lean_caches`, as `GPT.loss` runs it) does not keep the
attention pattern; no forward keeps GELU's tanh, LayerNorm's normalised x or attention's
scaled and contiguous copies: backward recomputes them. These tests hold the recomputing backward equal to
the readable reference paths (float64, random upstream gradients), equal to the
backward of a recorded forward, and they cut the arrays into many small blocks
(`core.blocks.row_blocks`) so that block edges are crossed.
"""

import numpy as np
import pytest

from minitransformer import GPT, ModelConfig
from minitransformer.attention import mha, mha_reference
from minitransformer.core import blocks, nn, registry
from minitransformer.core.tree import flatten

TIGHT = dict(rtol=1e-10, atol=1e-12)
CASES = [dict(positional=p, n_kv_heads=g) for p in ("learned", "rope") for g in (None, 2, 1)]


def config(**kw):
    return ModelConfig(**{**dict(vocab_size=32, context_length=16, d_model=16, n_heads=4, n_layers=2), **kw})


@pytest.fixture(params=[None, 40], ids=["one block", "many blocks"])
def block(request, monkeypatch):
    """Run each test with the usual block size and with blocks of 40 values (many, ragged)."""
    if request.param is not None:
        monkeypatch.setattr(blocks, "_BLOCK", request.param)
    return request.param


@pytest.mark.parametrize("kw", CASES, ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_training_attention_keeps_no_pattern_and_matches_the_reference(kw, block):
    cfg = config(**kw)
    rng = np.random.default_rng(0)
    params = {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape) for k, v in mha.init(cfg, rng).items()}
    x = rng.normal(size=(3, 7, cfg.d_model))
    positional = registry.chosen("positional", cfg)
    with nn.lean_caches():
        y, cache = mha.forward(params, x, cfg, np.arange(7), need_cache=True, positional=positional)
    assert "hook_pattern" not in cache and {"hook_q", "hook_k", "hook_v", "hook_z"} <= set(cache)
    y_r, c_r = mha_reference.forward(params, x, cfg, np.arange(7), need_cache=True, positional=positional)
    np.testing.assert_allclose(y_r, y, **TIGHT)
    np.testing.assert_allclose(c_r["hook_z"].reshape(cache["hook_z"].shape), cache["hook_z"], **TIGHT)
    dy = rng.normal(size=y.shape)
    dx, grads = mha.backward(params, cache, dy)
    dx_r, g_r = mha_reference.backward(params, c_r, dy)
    np.testing.assert_allclose(dx_r, dx, **TIGHT)
    for k in params:
        np.testing.assert_allclose(g_r[k], grads[k], err_msg=k, **TIGHT)


@pytest.mark.parametrize("kw", CASES[:3], ids=lambda kw: "-".join(f"{v}" for v in kw.values()))
def test_float32_recomputed_and_recorded_attention_agree(kw, block):
    cfg = config(**kw)
    rng = np.random.default_rng(1)
    params = mha.init(cfg, rng)
    x = rng.normal(size=(2, 9, cfg.d_model)).astype(np.float32)
    positional = registry.chosen("positional", cfg)
    with nn.lean_caches():
        y, lean = mha.forward(params, x, cfg, np.arange(9), positional=positional)
    y_rec, full = mha.forward(params, x, cfg, np.arange(9), positional=positional)  # outside: the whole pattern
    assert y.dtype == np.float32 and "hook_pattern" in full and "hook_pattern" not in lean
    assert not nn.lean()  # the block restored the default
    np.testing.assert_allclose(y, y_rec, rtol=1e-5, atol=1e-6)
    dy = rng.normal(size=y.shape).astype(np.float32)
    (dx, g), (dx_rec, g_rec) = mha.backward(params, lean, dy), mha.backward(params, full, dy)
    assert dx.dtype == np.float32 and all(v.dtype == np.float32 for v in g.values())
    np.testing.assert_allclose(dx, dx_rec, rtol=1e-4, atol=1e-6)
    for k in g:
        np.testing.assert_allclose(g[k], g_rec[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_gelu_recomputes_its_tanh_and_layernorm_its_xhat(block):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 7, 11)) * 2
    dy = rng.normal(size=x.shape)
    y, (_, t) = nn.gelu_forward(x)
    np.testing.assert_allclose(y, 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), **TIGHT)
    kept, recomputed = nn.gelu_backward(dy, (x, t)), nn.gelu_backward(dy, (x, None))
    np.testing.assert_array_equal(kept, recomputed)
    np.testing.assert_allclose(nn.gelu_backward_reference(dy, (x, t)), kept, **TIGHT)
    gamma, beta = rng.normal(size=11), rng.normal(size=11)
    y, cache = nn.layernorm_forward(x, gamma, beta)
    xhat = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(y, xhat * gamma + beta, **TIGHT)
    dx, dgamma, dbeta = nn.layernorm_backward(dy, cache)
    g = dy * gamma  # the textbook formula, written out
    expected = (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True)) / np.sqrt(
        x.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(dx, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(dgamma, (dy * xhat).sum((0, 1)), rtol=1e-9)
    np.testing.assert_allclose(dbeta, dy.sum((0, 1)), rtol=1e-9)


def test_cross_entropy_overwrite_gives_the_same_gradient_and_uses_the_cache_buffer(block):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 5, 13)).astype(np.float32)
    targets = rng.integers(0, 13, size=(2, 5))
    targets[0, 1] = -100
    loss, cache = nn.cross_entropy_forward(logits, targets)
    expected = -np.mean([np.log(np.exp(l_) / np.exp(l_).sum())[t_] for l_, t_ in
                         zip(logits.reshape(-1, 13).astype(np.float64), targets.reshape(-1)) if t_ != -100])
    assert loss == pytest.approx(expected, rel=1e-6)
    fresh = nn.cross_entropy_backward(cache)
    in_place = nn.cross_entropy_backward(cache, overwrite=True)
    assert np.shares_memory(in_place, cache[0]) and not np.shares_memory(fresh, cache[0])
    np.testing.assert_array_equal(fresh, in_place)


def test_model_gradients_equal_with_the_lean_cache_and_the_recorded_one():
    cfg = config(n_kv_heads=2)
    model = GPT(cfg, seed=0)
    ids = np.random.default_rng(4).integers(0, cfg.vocab_size, size=(2, 9))
    model.loss(ids[:, :-1], ids[:, 1:])
    lean = flatten(model.backward())
    from minitransformer.model import backward, forward
    logits, cache = forward(model.params, cfg, ids[:, :-1], need_cache=True)
    assert "hook_pattern" in cache["blocks"][0]["attn"]  # outside GPT.loss a cache keeps the pattern
    _, loss_cache = nn.cross_entropy_forward(logits, ids[:, 1:])
    full = flatten(backward(model.params, cfg, cache, nn.cross_entropy_backward(loss_cache)))
    for k in lean:
        np.testing.assert_allclose(lean[k], full[k], rtol=1e-4, atol=1e-7, err_msg=k)


def test_gelu_forward_with_grad_gives_gelu_and_its_derivative(block):
    x = np.random.default_rng(5).normal(size=(3, 50, 17)) * 3  # crosses block edges when blocks are small
    y, d = nn.gelu_forward_with_grad(x)
    np.testing.assert_allclose(y, nn.gelu_forward(x)[0], **TIGHT)
    np.testing.assert_allclose(d, nn.gelu_backward_reference(np.ones_like(x), (x, None)), **TIGHT)
    eps = 1e-6  # and the derivative is the slope of gelu
    np.testing.assert_allclose(d, (nn.gelu_forward(x + eps)[0] - nn.gelu_forward(x - eps)[0]) / (2 * eps),
                               rtol=1e-6, atol=1e-8)
    y32, d32 = nn.gelu_forward_with_grad(x.astype(np.float32))
    assert y32.dtype == d32.dtype == np.float32


def test_training_mlp_keeps_the_derivative_not_the_preactivation_and_matches(block):
    from minitransformer.feedforward import mlp
    cfg = config()
    rng = np.random.default_rng(6)
    params = {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape) for k, v in mlp.init(cfg, rng).items()}
    x = rng.normal(size=(2, 9, cfg.d_model))
    with nn.lean_caches():
        y, lean_cache = mlp.forward(params, x, cfg, need_cache=True)
    y_full, full_cache = mlp.forward(params, x, cfg, need_cache=True)
    assert "hook_pre" not in lean_cache and "gelu_grad" in lean_cache["saved"] and "hook_pre" in full_cache
    np.testing.assert_allclose(y, y_full, **TIGHT)
    dy = rng.normal(size=y.shape)
    (dx, g), (dx_f, g_f) = mlp.backward(params, lean_cache, dy), mlp.backward(params, full_cache, dy)
    np.testing.assert_allclose(dx, dx_f, **TIGHT)
    for k in g:
        np.testing.assert_allclose(g[k], g_f[k], err_msg=k, **TIGHT)


def test_gelu_alone_equals_the_forward_that_keeps_tanh():
    x = np.random.default_rng(7).normal(size=(4, 9, 33)) * 3
    np.testing.assert_allclose(nn.gelu(x), nn.gelu_forward(x)[0], **TIGHT)
    assert nn.gelu(x.astype(np.float32)).dtype == np.float32
