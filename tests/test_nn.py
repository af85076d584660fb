"""The shared mechanics: every backward against finite differences, and the known answers."""

import numpy as np
import pytest

from minitransformer.core import nn
from minitransformer.kit import gradcheck

rng = np.random.default_rng(0)


def check(fwd, bwd, arrays, out_shape=None):
    """gradcheck a forward (returning (y, cache)) against the backward's gradients."""
    y, cache = fwd(**arrays)
    dy = rng.normal(size=y.shape)
    analytic = bwd(dy, cache)
    report = gradcheck(lambda a: fwd(**a)[0], arrays, analytic, dy)
    assert report.ok, str(report)
    return report


def test_linear():
    def fwd(x, W, b):
        return nn.linear_forward(x, W, b)

    def bwd(dy, cache):
        dx, dW, db = nn.linear_backward(dy, cache, W, has_bias=True)
        return {"x": dx, "W": dW, "b": db}

    W = rng.normal(size=(4, 3))
    check(fwd, bwd, {"x": rng.normal(size=(2, 5, 4)), "W": W, "b": rng.normal(size=3)})


def test_layernorm():
    def fwd(x, g, b):
        return nn.layernorm_forward(x, g, b)

    def bwd(dy, cache):
        dx, dg, db = nn.layernorm_backward(dy, cache)
        return {"x": dx, "g": dg, "b": db}

    check(fwd, bwd, {"x": rng.normal(size=(2, 3, 6)), "g": rng.normal(size=6), "b": rng.normal(size=6)})


def test_rmsnorm():
    def fwd(x, g):
        return nn.rmsnorm_forward(x, g)

    def bwd(dy, cache):
        dx, dg = nn.rmsnorm_backward(dy, cache)
        return {"x": dx, "g": dg}

    check(fwd, bwd, {"x": rng.normal(size=(2, 3, 6)), "g": rng.normal(size=6)})


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_activations(name):
    f, b = getattr(nn, f"{name}_forward"), getattr(nn, f"{name}_backward")
    check(lambda x: f(x), lambda dy, c: {"x": b(dy, c)}, {"x": rng.normal(size=(3, 7)) * 3})


def test_softmax_backward():
    x = rng.normal(size=(3, 5))
    dy = rng.normal(size=(3, 5))
    p = nn.softmax(x)
    report = gradcheck(lambda a: nn.softmax(a["x"]), {"x": x}, {"x": nn.softmax_backward(dy, p)}, dy)
    assert report.ok, str(report)


def test_cross_entropy_backward_with_ignore_index():
    logits = rng.normal(size=(2, 4, 6))
    targets = rng.integers(0, 6, size=(2, 4))
    targets[0, 1] = -100
    loss, cache = nn.cross_entropy_forward(logits, targets)
    grad = nn.cross_entropy_backward(cache)
    report = gradcheck(lambda a: np.array(nn.cross_entropy_forward(a["l"], targets)[0]), {"l": logits}, {"l": grad}, np.array(1.0))
    assert report.ok, str(report)
    assert np.all(grad[0, 1] == 0.0)


def test_known_answers():
    # GELU(0) = 0, GELU(x) ~ x for large x, ~0 for very negative x
    g = nn.gelu_forward(np.array([0.0, 10.0, -10.0]))[0]
    assert g[0] == 0.0 and abs(g[1] - 10.0) < 1e-6 and abs(g[2]) < 1e-6
    # uniform logits: loss = log(V)
    loss, _ = nn.cross_entropy_forward(np.zeros((1, 3, 8)), np.array([[1, 2, 3]]))
    assert loss == pytest.approx(np.log(8))
    # layernorm output has zero mean, unit variance per row
    y, _ = nn.layernorm_forward(rng.normal(size=(4, 16)) * 5 + 3, np.ones(16), np.zeros(16))
    assert np.allclose(y.mean(-1), 0, atol=1e-7) and np.allclose(y.var(-1), 1, atol=1e-4)


def test_softmax_is_stable_and_log_softmax_agrees():
    x = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]])
    p = nn.softmax(x)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(-1), 1)
    assert np.allclose(nn.log_softmax(x[1:]), np.log(nn.softmax(x[1:])))
    assert np.isfinite(nn.log_softmax(x)).all()


@pytest.mark.parametrize("name", ["gelu", "silu"])
def test_float32_stays_float32(name):
    x = rng.normal(size=(2, 3)).astype(np.float32)
    assert getattr(nn, f"{name}_forward")(x)[0].dtype == np.float32
    assert nn.layernorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32))[0].dtype == np.float32
    assert nn.rmsnorm_forward(x, np.ones(3, np.float32))[0].dtype == np.float32
    assert nn.softmax(x).dtype == np.float32


def test_cross_entropy_bad_targets():
    with pytest.raises(ValueError, match="target id 9 is outside the vocabulary 0..5"):
        nn.cross_entropy_forward(np.zeros((1, 2, 6)), np.array([[1, 9]]))
    with pytest.raises(ValueError, match="must match"):
        nn.cross_entropy_forward(np.zeros((1, 2, 6)), np.array([[1, 2, 3]]))


def test_dropout_is_seeded_scaled_and_its_backward_uses_the_mask():
    x = np.ones((1000,), np.float32)
    y1, m1 = nn.dropout_forward(x, 0.25, np.random.default_rng(1))
    y2, _ = nn.dropout_forward(x, 0.25, np.random.default_rng(1))
    assert np.array_equal(y1, y2) and y1.dtype == np.float32
    assert set(np.unique(y1).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert 0.2 < (y1 == 0).mean() < 0.3
    assert np.array_equal(nn.dropout_backward(x, m1), y1)
    assert nn.dropout_forward(x, 0.25, None, train=False)[0] is x
    with pytest.raises(ValueError, match="explicit np.random.Generator"):
        nn.dropout_forward(x, 0.5, None)


def test_no_grad_restores_state():
    assert nn.grad_enabled()
    with nn.no_grad():
        assert not nn.grad_enabled() and nn.want_cache(None) is False and nn.want_cache(True) is True
    assert nn.grad_enabled() and nn.want_cache(None) is True


def test_gradcheck_catches_a_wrong_backward():
    x, W = rng.normal(size=(3, 4)), rng.normal(size=(4, 4))
    dy = rng.normal(size=(3, 4))
    _, dW, _ = nn.linear_backward(dy, x, W)
    wrong = {"W": dW.T}  # the classic transpose mistake
    report = gradcheck(lambda a: nn.linear_forward(x, a["W"])[0], {"W": W}, wrong, dy)
    assert not report.ok and "NOT OK" in str(report)
