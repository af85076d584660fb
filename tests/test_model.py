"""The whole model: end-to-end gradient check, causality, cache equivalence, determinism, errors."""

import numpy as np
import pytest

from minitransformer import costs
from minitransformer import model as model_mod
from minitransformer.core import nn
from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT
from minitransformer.kit import gradcheck_model

VARIANTS = [
    dict(),
    dict(positional="sinusoidal", tie_embeddings=False),
    dict(positional="rope", rope_style="interleaved", n_kv_heads=2, ffn="swiglu", norm="rmsnorm", bias=False),
    dict(positional="rope", n_kv_heads=1),
    dict(positional="none", ffn="swiglu"),
    # Multi-Head Latent Attention goes through the same model-level checks (its own are in test_mla.py)
    dict(attention="mla", positional="rope", d_latent=16, d_rope=4),
    dict(attention="mla", positional="rope", rope_style="interleaved", d_latent=16, d_latent_q=12, norm="rmsnorm",
         bias=False, ffn="swiglu"),
    dict(attention="mla", positional="learned", d_latent=8, latent_norm=False),
]


@pytest.mark.parametrize("kw", VARIANTS)
def test_end_to_end_gradcheck(kw):
    report = gradcheck_model(ModelConfig.preset("toy", **kw))
    assert report.ok, str(report)
    assert len(report.checks) == len(GPT(ModelConfig.preset("toy", **kw)).named_parameters())  # every array


@pytest.mark.parametrize("kw", VARIANTS)
def test_causality(kw):
    m = GPT(ModelConfig.preset("toy", **kw), seed=1)
    ids = np.array([[1, 2, 3, 4, 5, 6, 7, 8]])
    changed = ids.copy()
    changed[0, 5:] = [9, 9, 9]
    a, b = m.forward(ids), m.forward(changed)
    assert np.array_equal(a[:, :5], b[:, :5]) and not np.allclose(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("kw", VARIANTS)
def test_generation_with_kv_cache_equals_recompute(kw):
    m = GPT(ModelConfig.preset("toy", **kw), seed=2)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    for sampling in (dict(temperature=0.0), dict(temperature=1.0, top_k=10, seed=7)):
        cached = m.generate(prompt, 10, use_cache=True, **sampling)
        recomputed = m.generate(prompt, 10, use_cache=False, **sampling)
        assert np.array_equal(cached, recomputed) and cached.shape == (2, 13)


def test_generation_beyond_the_context_needs_crop():
    m = GPT("toy", seed=3)
    prompt = np.arange(10)[None] % 64
    with pytest.raises(ValueError, match="exceeds the context window \\(16\\).*crop=True"):
        m.generate(prompt, 10)
    a = m.generate(prompt, 10, temperature=0.0, crop=True)
    b = m.generate(prompt, 10, temperature=0.0, crop=True, use_cache=False)
    assert np.array_equal(a, b) and a.shape == (1, 20)


def test_determinism_same_seed_same_model_same_samples():
    a, b = GPT("toy", seed=4), GPT("toy", seed=4)
    for (n, x), y in zip(a.named_parameters().items(), b.named_parameters().values()):
        assert np.array_equal(x, y), n
    assert np.array_equal(a.generate(np.array([[1]]), 8, seed=3), b.generate(np.array([[1]]), 8, seed=3))
    assert not np.array_equal(a.generate(np.array([[1]]), 8, seed=3), a.generate(np.array([[1]]), 8, seed=4))


def test_input_errors():
    m = GPT("toy")
    with pytest.raises(ValueError, match="outside the vocabulary 0..63"):
        m.forward(np.array([[1, 64]]))
    with pytest.raises(ValueError, match="longer than the context window"):
        m.forward(np.zeros((1, 17), int))
    with pytest.raises(ValueError, match="call model.loss"):
        m.backward()
    with pytest.raises(ValueError, match="targets have shape"):
        m.loss(np.zeros((1, 4), int), np.zeros((1, 3), int))


def test_float32_logits_and_names():
    m = GPT("toy")
    assert m.forward(np.array([[1, 2]])).dtype == np.float32
    names = m.named_parameters()
    assert "blocks.0.attn.W_Q" in names and "embed.W_E" in names and "ln_final.w" in names
    assert m.num_params == sum(a.size for a in names.values())
    with nn.no_grad():
        assert model_mod.forward(m.params, m.config, np.array([[1]]))[1] is None


def test_loss_at_init_is_near_uniform():
    m = GPT("toy", seed=0)
    ids = np.random.default_rng(0).integers(0, 64, (4, 16))
    assert abs(m.loss(ids[:, :-1], ids[:, 1:]) - np.log(64)) < 0.1


def test_an_attention_only_model_trains_and_reports_its_cost():
    cfg = ModelConfig.preset("toy", ffn="none", tie_embeddings=False)
    report = gradcheck_model(cfg)
    assert report.ok, str(report)
    gelu = cfg.replace(ffn="gelu")
    mlp_params = sum(a.size for a in GPT(gelu).params["blocks"][0]["mlp"].values())
    assert costs.count_params(cfg) == costs.count_params(gelu) - cfg.n_layers * mlp_params
    mlp_flops = 2 * 2 * cfg.d_model * gelu.ff_width  # W_in and W_out, 2 FLOPs per multiply-add
    assert costs.estimate_flops_per_token(cfg) == costs.estimate_flops_per_token(gelu) - cfg.n_layers * mlp_flops
    m = GPT(cfg, seed=0)
    logits, cache = model_mod.forward(m.params, cfg, np.array([[1, 2, 3]]), need_cache=True)
    grads = model_mod.backward(m.params, cfg, cache, np.ones_like(logits))
    assert all(np.all(g == 0) for g in grads["blocks"][0]["ln2"].values())  # ln2 feeds nothing


@pytest.mark.parametrize("ids", [np.zeros((1, 0), dtype=np.int64), np.zeros((3, 0), dtype=np.int32), [[]]])
def test_empty_sequences_are_a_clear_error(ids):
    model = GPT("toy", seed=0)
    with pytest.raises(ValueError, match=r"ids have no tokens \(shape \(\d, 0\)\): the model needs at least one"):
        model.forward(ids)
    with pytest.raises(ValueError, match="ids have no tokens"):
        model.loss(ids, np.zeros(np.shape(ids), dtype=np.int64))
    with pytest.raises(ValueError, match=r"the prompt is empty \(shape \(\d, 0\)\): give at least one token"):
        model.generate(ids, 3)
