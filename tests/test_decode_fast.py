"""The decoding shortcuts give the same tokens as the plain computation.

Generation keeps the fused q|k|v weight in the KV cache (made once, not per token),
samples greedily with one argmax, and writes the ids into one preallocated array.
"""

import numpy as np

from minitransformer import GPT, ModelConfig
from minitransformer.core import nn
from minitransformer.feedforward import output
from minitransformer.model import new_kv_cache


def test_the_fused_weight_kept_in_the_cache_follows_the_parameters():
    cfg = ModelConfig.preset("toy")
    model = GPT(cfg, seed=0)
    ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(2, 6))
    kv = new_kv_cache(cfg, batch_size=2)
    with nn.no_grad():
        model.forward(ids[:, :5], kv_cache=kv)
        assert ("qkv", 0) in kv.derived
        attn = model.params["blocks"][0]["attn"]
        attn["W_Q"] = attn["W_Q"] + 0.5  # new weights (a new array): the kept fusion must not be used
        last = model.forward(ids[:, 5:], kv_cache=kv)[:, -1]
    fused = np.concatenate([attn["W_Q"], attn["W_K"], attn["W_V"]], axis=1)
    assert kv.derived[("qkv", 0)][1][0].shape == fused.shape
    np.testing.assert_array_equal(kv.derived[("qkv", 0)][1][0], fused)
    # the query of the last token used the new W_Q: compare with a run without a cache, whose keys
    # for positions 0..4 use the old W_K = the same W_K (only W_Q changed)
    np.testing.assert_allclose(model.forward(ids)[:, -1], last, rtol=1e-5, atol=1e-6)
    kv.reset()
    assert kv.derived == {}


def test_greedy_sampling_is_the_argmax_of_probabilities():
    logits = np.random.default_rng(1).normal(size=(5, 17)).astype(np.float32)
    logits[2, [3, 9]] = logits[2].max() + 1.0  # a tie: the first one wins in both
    fast = output.sample(logits, rng=None, temperature=0)
    assert fast.dtype == np.int64
    np.testing.assert_array_equal(fast, output.probabilities(logits, temperature=0).argmax(-1))
    assert fast[2] == 3


def test_generate_returns_int64_ids_equal_with_and_without_cache():
    cfg = ModelConfig.preset("toy")
    model = GPT(cfg, seed=2)
    prompt = np.array([[1, 2, 3]], dtype=np.int32)
    cached = model.generate(prompt, 9, temperature=0.0)
    assert cached.dtype == np.int64 and cached.shape == (1, 12)
    np.testing.assert_array_equal(cached[:, :3], prompt)
    np.testing.assert_array_equal(cached, model.generate(prompt, 9, temperature=0.0, use_cache=False))
    sampled = model.generate(prompt, 9, temperature=0.8, seed=3)
    np.testing.assert_array_equal(sampled, model.generate(prompt, 9, temperature=0.8, seed=3, use_cache=False))
