"""The seam between positions and attention: attention consumes what a positional variant offers
(a rotation of q and k, a score bias), for MHA/GQA/MQA and MLA alike, and never asks for a name."""

from __future__ import annotations

import numpy as np
import pytest

from minitransformer.core import registry
from minitransformer.core.config import ModelConfig
from minitransformer.kit import gradcheck_model
from minitransformer.model import GPT

BASE = dict(vocab_size=40, context_length=16, d_model=32, n_layers=2, n_heads=4)
ATTENTIONS = [dict(attention="mha"), dict(attention="mha", n_kv_heads=2), dict(attention="mha", n_kv_heads=1),
              dict(attention="mla", d_latent=16, bias=False)]


# --------------------------------------------------------------------------- a student's rotary variant
def _angles(positions, width, base):
    inv = base ** (-np.arange(0, width, 2) / width)  # (width/2,)
    return np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]  # (T, width/2)


def partial_rotate(x, positions, config):
    """Rotate only the first half of each vector's pairs (interleaved), base 500; leave the rest alone."""
    d = x.shape[-1]
    r = max(2, d // 2 // 2 * 2)  # rotated width, even
    theta = _angles(positions, r, 500.0).astype(x.dtype)
    cos, sin = np.cos(theta), np.sin(theta)  # (T, r/2)
    out = x.copy()
    a, b = x[..., 0:r:2], x[..., 1:r:2]
    out[..., 0:r:2] = a * cos - b * sin
    out[..., 1:r:2] = a * sin + b * cos
    return out


def partial_rotate_backward(dy, positions, config):
    d = dy.shape[-1]
    r = max(2, d // 2 // 2 * 2)
    theta = _angles(positions, r, 500.0).astype(dy.dtype)
    cos, sin = np.cos(theta), np.sin(theta)
    dx = dy.copy()
    da, db = dy[..., 0:r:2], dy[..., 1:r:2]
    dx[..., 0:r:2] = da * cos + db * sin  # the transpose of the rotation
    dx[..., 1:r:2] = -da * sin + db * cos
    return dx


def _no_params(config, rng):
    return {}


def _identity(params, x, positions, config, need_cache=None):
    return x, None


def _identity_backward(params, cache, dy):
    return dy, {}


@pytest.fixture
def partial_rope():
    registry.register_positional("partial_rope", init=_no_params, forward=_identity, backward=_identity_backward,
                                 rotate=partial_rotate, rotate_backward=partial_rotate_backward)
    yield "partial_rope"
    registry.unregister("positional", "partial_rope")


@pytest.mark.parametrize("attn", ATTENTIONS, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()))
def test_a_students_rotary_variant_plugs_in_by_registration_alone(partial_rope, attn):
    cfg = ModelConfig(**BASE, positional=partial_rope, **attn)
    assert registry.is_rotary(cfg)
    if cfg.attention == "mla":
        assert cfg.rope_dim > 0  # the decoupled channel exists because the variant rotates
    report = gradcheck_model(cfg.replace(n_layers=1), seed=1)
    assert report.ok, str(report)
    model = GPT(cfg, seed=0)
    ids = np.array([[3, 1, 4, 1, 5, 9, 2, 6]])
    logits, cache = model.run_with_cache(ids)
    assert "blocks.0.attn.hook_rot_q" in cache
    # positions matter: the same tokens shifted by one position give different logits (no learned positions)
    assert not np.allclose(model.forward(ids)[:, -1], model.forward(ids[:, 1:])[:, -1])
    # and the rotation is the student's: a different base would change the output
    gen = model.generate(ids[:, :3], 4, seed=0)
    assert np.array_equal(gen, model.generate(ids[:, :3], 4, seed=0, use_cache=False))


# --------------------------------------------------------------------------- a score bias reaches every attention
@pytest.mark.parametrize("attn", ATTENTIONS, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()))
def test_a_score_bias_is_applied_by_every_attention_variant(attn):
    calls = []

    def bias(q_positions, k_positions, config):
        calls.append((len(q_positions), len(k_positions)))
        slopes = 2.0 ** -np.arange(1, config.n_heads + 1)  # (H,)
        dist = np.asarray(q_positions)[:, None] - np.asarray(k_positions)[None, :]  # (T, S)
        return -slopes[:, None, None] * np.maximum(dist, 0)[None]  # (H, T, S)

    registry.register_positional("alibi_probe", init=_no_params, forward=_identity, backward=_identity_backward,
                                 score_bias=bias)
    try:
        cfg = ModelConfig(**BASE, positional="alibi_probe", **attn)
        model = GPT(cfg, seed=0)
        ids = np.array([[3, 1, 4, 1, 5, 9]])
        with_bias = model.forward(ids)
        assert len(calls) == cfg.n_layers  # once per layer, MLA included
        registry.unregister("positional", "alibi_probe")
        registry.register_positional("alibi_probe", init=_no_params, forward=_identity,
                                     backward=_identity_backward)
        assert not np.allclose(with_bias, model.forward(ids))  # the bias changed what attention retrieved
    finally:
        registry.unregister("positional", "alibi_probe")


def test_attention_modules_never_name_a_positional_variant():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "minitransformer" / "attention"
    for path in root.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "config.positional" not in text, f"{path.name} decides by the positional variant's name"


def test_mla_with_a_rope_channel_and_no_rotation_is_a_clear_error():
    from minitransformer.attention import mla

    cfg = ModelConfig(**BASE, attention="mla", positional="rope", d_latent=16, bias=False)
    params = mla.init(cfg, np.random.default_rng(0))
    with pytest.raises(ValueError, match="no rotation was given"):
        mla.forward(params, np.zeros((1, 3, 32), np.float32), cfg, np.arange(3))
