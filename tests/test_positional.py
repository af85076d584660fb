"""Stage 3, positional encoding: known values, RoPE's rotation properties, gradients, dtypes, errors."""

import math

import numpy as np
import pytest

from minitransformer import positional
from minitransformer.core import nn
from minitransformer.core.config import ModelConfig
from minitransformer.positional import VARIANTS, backward, binary_positions, forward, init, rope_angles, rope_apply, rope_backward, sinusoidal_table
from minitransformer.kit import gradcheck

STYLES = ("half", "interleaved")


def config(positional="learned", **overrides):
    return ModelConfig.preset("toy", positional=positional, **overrides)  # context_length 16, d_model 32


def half_from_interleaved(D):
    """perm with ``x_half = x_interleaved[..., perm]``: pair i is (2i, 2i+1) in one layout, (i, i + D/2) in the other."""
    return np.concatenate([np.arange(0, D, 2), np.arange(1, D, 2)])


# --------------------------------------------------------------------------- sinusoidal
def test_sinusoidal_known_values():
    pe = sinusoidal_table(6, 8)
    assert pe.shape == (6, 8) and pe.dtype == np.float32
    np.testing.assert_array_equal(pe[0], [0, 1, 0, 1, 0, 1, 0, 1])  # sin 0 = 0, cos 0 = 1
    assert pe[1, 0] == pytest.approx(math.sin(1.0), abs=1e-7)
    assert pe[1, 1] == pytest.approx(math.cos(1.0), abs=1e-7)
    # d = 8, i = 1: base^(2/8) = 10; i = 2: base^(4/8) = 100
    assert pe[5, 2] == pytest.approx(math.sin(0.5), abs=1e-7)
    assert pe[5, 3] == pytest.approx(math.cos(0.5), abs=1e-7)
    assert pe[3, 4] == pytest.approx(math.sin(0.03), abs=1e-7)
    assert pe[3, 5] == pytest.approx(math.cos(0.03), abs=1e-7)


def test_sinusoidal_is_accurate_at_large_positions():
    # angles computed in float32 would be off by ~1e-5 here (1999 * 0.1 in float32)
    pe = sinusoidal_table(2000, 8)
    assert pe[1999, 2] == pytest.approx(math.sin(199.9), abs=1e-6)
    assert pe[1999, 7] == pytest.approx(math.cos(1999 / 1000.0), abs=1e-6)


def test_sinusoidal_odd_width_is_refused():
    with pytest.raises(ValueError, match="must be even"):
        sinusoidal_table(4, 7)


def test_binary_positions():
    bits = binary_positions(6, 3)
    np.testing.assert_array_equal(bits, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1]])
    np.testing.assert_array_equal(bits @ [1, 2, 4], np.arange(6))  # the digits spell the position
    with pytest.raises(ValueError, match="n_bits >= 4"):
        binary_positions(9, 3)


# --------------------------------------------------------------------------- RoPE
def test_rope_angles_shapes_and_position_zero():
    cos, sin = rope_angles(np.arange(5), 8)
    assert cos.shape == sin.shape == (5, 4) and cos.dtype == sin.dtype == np.float32
    np.testing.assert_array_equal(cos[0], 1.0)
    np.testing.assert_array_equal(sin[0], 0.0)
    assert sin[3, 1] == pytest.approx(math.sin(3 * 0.1), abs=1e-7)  # theta_1 = 10000^(-2/8) = 0.1
    with pytest.raises(ValueError, match="must be even"):
        rope_angles(np.arange(5), 7)


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("p", [0, 1, 2, 5, 37])
def test_rope_rotates_unit_vector(style, p):
    cos, sin = rope_angles(np.array([p]), 2)
    y = rope_apply(np.array([[1.0, 0.0]], dtype=np.float32), cos, sin, style)
    np.testing.assert_allclose(y, [[math.cos(p), math.sin(p)]], atol=1e-6)
    assert y.dtype == np.float32


def test_rope_pairs_known_answer():
    # D = 4: pair 1 turns at theta_1 = 10000^(-2/4) = 0.01; which dims form pair 1 depends on the style
    cos, sin = rope_angles(np.array([3]), 4)
    e = np.eye(4, dtype=np.float32)
    c, s = math.cos(0.03), math.sin(0.03)
    np.testing.assert_allclose(rope_apply(e[None, 2], cos, sin, "interleaved"), [[0, 0, c, s]], atol=1e-7)
    np.testing.assert_allclose(rope_apply(e[None, 1], cos, sin, "half"), [[0, c, 0, s]], atol=1e-7)


@pytest.mark.parametrize("style", STYLES)
def test_rope_position_zero_is_identity_and_norms_are_kept(style):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 16)).astype(np.float32)  # (B, H, T, D)
    cos0, sin0 = rope_angles(np.zeros(7, dtype=int), 16)
    np.testing.assert_array_equal(rope_apply(x, cos0, sin0, style), x)
    cos, sin = rope_angles(np.arange(100, 107), 16)
    y = rope_apply(x, cos, sin, style)
    assert y.shape == x.shape and y.dtype == np.float32
    assert not np.allclose(y, x)
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


@pytest.mark.parametrize("style", STYLES)
def test_rope_scores_depend_only_on_relative_position(style):
    rng = np.random.default_rng(1)
    T, D = 9, 16
    q, k = rng.standard_normal((2, T, D)).astype(np.float32)

    def scores(start):
        cos, sin = rope_angles(start + np.arange(T), D)
        return rope_apply(q, cos, sin, style) @ rope_apply(k, cos, sin, style).T  # (T, D) @ (D, T) -> (T, T)

    np.testing.assert_allclose(scores(0), scores(50), atol=1e-5)
    np.testing.assert_allclose(scores(0), scores(1234), atol=1e-5)
    assert not np.allclose(scores(0), q @ k.T, atol=1e-3)  # the rotation does change the scores


def test_rope_styles_agree_up_to_a_permutation():
    rng = np.random.default_rng(2)
    T, D = 6, 8
    perm = half_from_interleaved(D)
    np.testing.assert_array_equal(perm, [0, 2, 4, 6, 1, 3, 5, 7])
    x = rng.standard_normal((2, T, D)).astype(np.float32)
    cos, sin = rope_angles(np.arange(3, 3 + T), D)
    inter, half = rope_apply(x, cos, sin, "interleaved"), rope_apply(x, cos, sin, "half")
    assert not np.allclose(inter, half)  # different pairs are rotated...
    np.testing.assert_allclose(rope_apply(x[..., perm], cos, sin, "half"), inter[..., perm], atol=1e-6)  # ...by the same rotation
    q, k = x[0], x[1]
    dots_inter = rope_apply(q, cos, sin, "interleaved") @ rope_apply(k, cos, sin, "interleaved").T
    dots_half = rope_apply(q[:, perm], cos, sin, "half") @ rope_apply(k[:, perm], cos, sin, "half").T
    np.testing.assert_allclose(dots_inter, dots_half, atol=1e-5)


@pytest.mark.parametrize("style", STYLES)
def test_rope_backward_gradcheck(style):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 8))  # (B, H, T, D) float64
    dy = rng.standard_normal(x.shape)
    cos, sin = rope_angles(np.arange(4, 9), 8)
    dx = rope_backward(dy, cos, sin, style)
    assert dx.dtype == np.float64
    report = gradcheck(lambda a: rope_apply(a["x"], cos, sin, style), {"x": x}, {"x": dx}, dy, max_entries=240)
    assert report.ok, str(report)


def test_rope_apply_errors():
    cos, sin = rope_angles(np.arange(4), 8)
    x = np.zeros((4, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="choose one of 'half', 'interleaved'"):
        rope_apply(x, cos, sin, "neox")
    with pytest.raises(ValueError, match=r"x \(4, 6\)"):
        rope_apply(np.zeros((4, 6), dtype=np.float32), cos, sin, "half")


# --------------------------------------------------------------------------- the stage
def test_init_by_variant_and_determinism():
    cfg = config("learned")
    a, b = init(cfg, np.random.default_rng(7)), init(cfg, np.random.default_rng(7))
    assert set(a) == {"W_pos"} and a["W_pos"].shape == (16, 32) and a["W_pos"].dtype == np.float32
    np.testing.assert_array_equal(a["W_pos"], b["W_pos"])
    assert not np.array_equal(a["W_pos"], init(cfg, np.random.default_rng(8))["W_pos"])
    big = init(config("learned", context_length=512, init_std=0.5), np.random.default_rng(0))["W_pos"]
    assert big.std() == pytest.approx(0.5, rel=0.02)
    for variant in ("sinusoidal", "rope", "none"):
        assert init(config(variant), np.random.default_rng(0)) == {}


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_keeps_float32_and_offsets_pick_the_right_rows(variant):
    cfg = config(variant)
    params = init(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((3, 6, 32)).astype(np.float32)
    positions = 5 + np.arange(6)  # decoding with start_pos = 5
    y, cache = forward(params, x, positions, cfg)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_array_equal(cache["positions"], positions)
    expected = {"learned": lambda: params["W_pos"][5:11], "sinusoidal": lambda: sinusoidal_table(16, 32)[5:11]}
    if variant in expected:
        rows = expected[variant]()
        np.testing.assert_array_equal(cache["hook_pos_embed"], rows)
        np.testing.assert_allclose(y, x + rows, rtol=0, atol=0)
    else:
        assert cache["hook_pos_embed"] is None
        np.testing.assert_array_equal(y, x)


def test_learned_gradcheck_for_x_and_W_pos():
    cfg = config("learned")
    rng = np.random.default_rng(4)
    params = {"W_pos": rng.standard_normal((16, 32))}  # float64 for the check
    x = rng.standard_normal((2, 5, 32))
    positions = 3 + np.arange(5)
    dy = rng.standard_normal(x.shape)
    _, cache = forward(params, x, positions, cfg)
    dx, grads = backward(params, cache, dy)
    assert set(grads) == {"W_pos"}
    np.testing.assert_array_equal(np.delete(grads["W_pos"], positions, axis=0), 0.0)  # unused rows: no gradient
    report = gradcheck(lambda a: forward({"W_pos": a["W_pos"]}, a["x"], positions, cfg)[0],
                       {"x": x, "W_pos": params["W_pos"]}, {"x": dx, "W_pos": grads["W_pos"]}, dy, max_entries=600)
    assert report.ok, str(report)


@pytest.mark.parametrize("variant", ["sinusoidal", "rope", "none"])
def test_parameter_free_backward_is_identity(variant):
    cfg = config(variant)
    dy = np.random.default_rng(5).standard_normal((2, 4, 32)).astype(np.float32)
    _, cache = forward({}, np.zeros((2, 4, 32), dtype=np.float32), np.arange(4), cfg)
    dx, grads = backward({}, cache, dy)
    assert grads == {}
    np.testing.assert_array_equal(dx, dy)
    assert dx.dtype == np.float32


def test_learned_backward_refuses_repeated_positions():
    params = {"W_pos": np.zeros((16, 32), dtype=np.float32)}
    with pytest.raises(ValueError, match="distinct"):
        backward(params, {"positions": np.array([1, 1]), "hook_pos_embed": None}, np.ones((1, 2, 32), np.float32))


def test_cache_is_skipped_when_not_needed():
    cfg = config("learned")
    params = init(cfg, np.random.default_rng(0))
    x = np.zeros((1, 4, 32), dtype=np.float32)
    assert forward(params, x, np.arange(4), cfg, need_cache=False)[1] is None
    with nn.no_grad():
        y, cache = forward(params, x, np.arange(4), cfg)
        assert cache is None
        assert forward(params, x, np.arange(4), cfg, need_cache=True)[1] is not None
    np.testing.assert_array_equal(y, params["W_pos"][None, :4])
    with pytest.raises(ValueError, match="need_cache=True"):
        backward(params, None, np.zeros_like(x))


@pytest.mark.parametrize("variant", ["learned", "sinusoidal"])
def test_positions_beyond_context_length_are_refused(variant):
    cfg = config(variant)
    params = init(cfg, np.random.default_rng(0))
    x = np.zeros((1, 8, 32), dtype=np.float32)
    with pytest.raises(ValueError, match=r"position 17 .*context_length=16.*crop the prompt.*raise context_length"):
        forward(params, x, 10 + np.arange(8), cfg)
    with pytest.raises(ValueError, match=r"position 16 is outside 0\.\.15"):  # one past the last row
        forward(params, x, 9 + np.arange(8), cfg)
    with pytest.raises(ValueError, match="position -1"):
        forward(params, x, np.arange(-1, 7), cfg)
    forward(params, x, 8 + np.arange(8), cfg)  # the last row, 15, is fine


def test_bad_inputs_are_refused():
    cfg = config("learned")
    params = init(cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        forward(params, np.zeros((4, 32), dtype=np.float32), np.arange(4), cfg)
    with pytest.raises(ValueError, match=r"d_model = 32"):
        forward(params, np.zeros((1, 4, 16), dtype=np.float32), np.arange(4), cfg)
    with pytest.raises(ValueError, match="float array"):
        forward(params, np.zeros((1, 4, 32), dtype=np.int64), np.arange(4), cfg)
    with pytest.raises(ValueError, match=r"\(T,\) = \(4,\)"):
        forward(params, np.zeros((1, 4, 32), dtype=np.float32), np.arange(5), cfg)


def test_rope_styles_are_named_once():
    from minitransformer.core import config as config_module
    from minitransformer.core import registry

    assert positional.ROPE_STYLES is config_module.ROPE_STYLES
    assert set(positional.VARIANTS) <= set(registry.names("positional"))
