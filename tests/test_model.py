"""The whole model: end-to-end gradient check, causality, cache equivalence, determinism, errors."""

import numpy as np
import pytest

from minitransformer import model as model_mod
from minitransformer import nn
from minitransformer.config import ModelConfig
from minitransformer.model import GPT, flatten
from minitransformer.testing import gradcheck

VARIANTS = [
    dict(),
    dict(positional="sinusoidal", tie_embeddings=False),
    dict(positional="rope", rope_style="interleaved", n_kv_heads=2, ffn="swiglu", norm="rmsnorm", bias=False),
    dict(positional="rope", n_kv_heads=1),
    dict(positional="none", ffn="swiglu"),
]


def to_f64(tree):
    if isinstance(tree, dict):
        return {k: to_f64(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [to_f64(v) for v in tree]
    return tree.astype(np.float64)


@pytest.mark.parametrize("kw", VARIANTS)
def test_end_to_end_gradcheck(kw):
    cfg = ModelConfig.preset("toy", **kw)
    rng = np.random.default_rng(0)
    params = to_f64(model_mod.init_params(cfg, rng))
    for a in flatten(params).values():  # move away from the init (zero biases, unit gains)
        a += rng.normal(0, 0.1, a.shape)
    ids = rng.integers(0, cfg.vocab_size, size=(2, 6))
    logits, cache = model_mod.forward(params, cfg, ids, need_cache=True)
    dlogits = rng.normal(size=logits.shape)
    grads = model_mod.backward(params, cfg, cache, dlogits)
    flat_p, flat_g = flatten(params), flatten(grads)
    assert set(flat_p) == set(flat_g)

    def fn(arrays):  # the arrays are views into params: perturbing them perturbs the model
        return model_mod.forward(params, cfg, ids, need_cache=False)[0]

    report = gradcheck(fn, flat_p, flat_g, dlogits, max_entries=6)
    assert report.ok, str(report)


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
