"""The contract kit: the library's own stages pass, and the classic mistakes are caught."""

import math
import types

import numpy as np
import pytest

from minitransformer.core.nn import softmax
from minitransformer.kit import check_stage


@pytest.mark.parametrize(
    "kind, variant",
    [("attention", "mha"), ("positional", "learned"), ("positional", "sinusoidal"), ("positional", "rope"),
     ("positional", "none"), ("feedforward", "gelu"), ("feedforward", "swiglu")],
)
def test_library_variants_pass(kind, variant):
    report = check_stage(kind, variant)
    assert report.ok, str(report)
    assert str(report).count("PASS") == len(report.checks)


def student_attention(causal=True, stable=True, absolute_positions=True, transpose_bug=False):
    """A from-scratch multi-head attention written the way a student would, with optional bugs."""

    def init(config, rng):
        C = config.d_model
        return {k: rng.normal(0, 0.2, (C, C)).astype(np.float32) for k in ("W_Q", "W_K", "W_V", "W_O")}

    def forward(params, x, config, positions, kv_cache=None, layer=0, need_cache=None):
        B, T, C = x.shape
        H, D = config.n_heads, config.d_head
        split = lambda a: a.reshape(B, -1, H, D).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(x @ params["W_Q"]), split(x @ params["W_K"]), split(x @ params["W_V"])
        if kv_cache is not None:
            k, v = kv_cache.append(layer, k, v)
        S = k.shape[2]
        s = q @ k.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(D))
        query_pos = np.asarray(positions) if absolute_positions else np.arange(T)  # bug: forgets the offset
        if causal:
            s = np.where(np.arange(S)[None, :] > query_pos[:, None], -np.inf, s)
        if stable:
            p = softmax(s)
        else:  # bug: exp without subtracting the row max
            e = np.exp(s)
            p = e / e.sum(-1, keepdims=True)
        z = (p @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        return z @ params["W_O"], {"x": x, "q": q, "k": k, "v": v, "p": p, "z": z, "H": H, "D": D}

    def backward(params, cache, dy):
        x, q, k, v, p, z, H, D = (cache[n] for n in ("x", "q", "k", "v", "p", "z", "H", "D"))
        B, T, C = x.shape
        merge = lambda a: a.transpose(0, 2, 1, 3).reshape(B, T, C)  # noqa: E731
        dW_O = z.reshape(-1, C).T @ dy.reshape(-1, C)
        dz = (dy @ params["W_O"].T).reshape(B, T, H, D).transpose(0, 2, 1, 3)
        dp = dz @ v.transpose(0, 1, 3, 2)
        dv = p.transpose(0, 1, 3, 2) @ dz
        ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * (1.0 / math.sqrt(D))
        dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
        dq, dk, dv = merge(dq), merge(dk), merge(dv)
        x2 = x.reshape(-1, C)
        grads = {"W_O": dW_O, "W_Q": x2.T @ dq.reshape(-1, C), "W_K": x2.T @ dk.reshape(-1, C),
                 "W_V": x2.T @ dv.reshape(-1, C)}
        if transpose_bug:
            grads["W_Q"] = grads["W_Q"].T  # bug: the classic wrong transpose
        dx = dq @ params["W_Q"].T + dk @ params["W_K"].T + dv @ params["W_V"].T
        return dx, grads

    return types.SimpleNamespace(init=init, forward=forward, backward=backward, __name__="student_attention")


def failed(report):
    return {c.name for c in report.checks if not c.passed}


def test_a_correct_student_attention_passes():
    report = check_stage("attention", student_attention())
    assert report.ok, str(report)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the unstable softmax overflows, on purpose
@pytest.mark.parametrize(
    "bug, caught_by",
    [
        (dict(causal=False), {"causality"}),
        (dict(transpose_bug=True), {"gradient check"}),
        (dict(stable=False), {"stability"}),
        (dict(absolute_positions=False), {"KV cache"}),
    ],
)
def test_classic_mistakes_are_caught(bug, caught_by):
    report = check_stage("attention", student_attention(**bug))
    assert not report.ok
    assert caught_by <= failed(report), str(report)
    assert "FAIL" in str(report)
    with pytest.raises(AssertionError, match="FAILED"):
        report.assert_ok()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the unstable softmax overflows, on purpose
def test_missing_backward_and_missing_forward():
    fns = student_attention()
    report = check_stage("attention", {"init": fns.init, "forward": fns.forward})
    assert failed(report) == {"gradient check"}  # a forward-only draft: everything else still checked
    assert "backward is missing" in str(report)
    with pytest.raises(ValueError, match="missing \\['forward'\\]"):
        check_stage("attention", {"init": fns.init})
    with pytest.raises(ValueError, match="kind must be one of"):
        check_stage("embedding", "x")


def test_a_positional_encoding_without_a_range_check_is_caught():
    from minitransformer import positional

    def forward(params, x, positions, config, need_cache=None):  # learned rows, no range check:
        rows = params["W_pos"][np.asarray(positions) % config.context_length]  # bug: wraps around silently
        return x + rows, {"positions": positions}

    student = {"init": positional.init, "forward": forward,
               "backward": lambda p, c, dy: positional.backward(p, {"positions": c["positions"], "hook_pos_embed": None}, dy)}
    from minitransformer.core.config import ModelConfig

    cfg = ModelConfig(vocab_size=32, context_length=12, d_model=16, n_layers=1, n_heads=4, positional="learned")
    report = check_stage("positional", student, config=cfg)
    assert "context boundary" in failed(report), str(report)
