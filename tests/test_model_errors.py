"""Mistakes a student makes with the model's Python API get an error that names them, not a wrong answer.

Params of another config, targets that are not ids, an empty batch, a KV cache of another batch
size, a misspelled registry option, a class whose functions take ``self``, config numbers that
are not finite, and generation arguments."""

import numpy as np
import pytest

from minitransformer import GPT, ModelConfig
from minitransformer.core import cores, registry


def test_params_of_another_config_are_refused():
    bigger_vocab = GPT(ModelConfig.preset("toy", vocab_size=300)).params
    with pytest.raises(ValueError, match=r"params\['embed.W_E'\] is a float32 array of shape \(300, 32\); expected "
                                         r"a float array of shape \(64, 32\)"):
        GPT("toy", params=bigger_vocab)  # before: ran, and accepted ids up to 299 with a 64-id config
    with pytest.raises(ValueError, match=r"params do not fit: missing \['blocks.2.attn.W_K'"):
        GPT(ModelConfig.preset("toy", n_layers=3), params=GPT("toy").params)  # before: ran 2 of 3 layers
    with pytest.raises(ValueError, match=r"unknown \['blocks.2.attn.W_K'"):
        GPT("toy", params=GPT(ModelConfig.preset("toy", n_layers=3)).params)
    params = GPT("toy").params
    params["ln_final"]["w"] = params["ln_final"]["w"].astype(np.int64)
    with pytest.raises(ValueError, match=r"params\['ln_final.w'\] is a int64 array"):
        GPT("toy", params=params)
    with pytest.raises(TypeError, match="config must be a ModelConfig or a preset name, got dict"):
        GPT({"vocab_size": 64})
    same = GPT("toy", seed=3)
    ids = np.array([[1, 2, 3]])
    assert np.array_equal(GPT("toy", params=same.params).forward(ids), same.forward(ids))  # a fitting tree runs


def test_targets_must_be_ids_and_a_shard_of_padding_adds_nothing():
    model, ids = GPT("toy"), np.zeros((2, 3), int)
    for bad in (ids.astype(float), np.full((2, 3), "a")):
        with pytest.raises(TypeError, match="targets must be integer token ids, got dtype"):
            model.loss(ids, bad)
    ids = np.random.default_rng(0).integers(0, 64, (256, 16))  # enough rows for two shards
    targets = np.full(ids.shape, -100)
    targets[-1, -1] = 5  # one real target, in the last sequence: the first shard is all padding
    assert len(cores.shard_slices(256, 2, 16 * 32)) == 2
    one, two = GPT("toy", threads=1), GPT("toy", threads=2)
    assert np.isclose(two.loss(ids, targets), one.loss(ids, targets), rtol=1e-6)
    g1, g2 = one.backward(), two.backward()
    assert np.allclose(g1["embed"]["W_E"], g2["embed"]["W_E"], atol=1e-7)


def test_empty_batch_and_a_cache_of_another_batch_size():
    model = GPT("toy")
    with pytest.raises(ValueError, match=r"ids have no rows \(shape \(0, 3\)\)"):
        model.forward(np.zeros((0, 3), int))
    with pytest.raises(ValueError, match=r"the KV cache stores \(B, G, T, D\) = \(1, 4, T, 8\); got keys \(2, 4, 3, 8\)"):
        model.forward(np.zeros((2, 3), int), kv_cache=model.new_kv_cache(1))


def test_registry_refuses_misspelled_and_broken_options():
    def init(config, rng):
        return {}

    def forward(params, x, positions, config, need_cache=None):
        return x, None

    with pytest.raises(ValueError, match=r"unknown option\(s\) 'scores_bias'; a variant may offer rotate, "):
        registry.register_positional("typo_bias", init=init, forward=forward, scores_bias=lambda *a: 0)
    with pytest.raises(ValueError, match="score_bias= must be a function, got int"):
        registry.register_positional("int_bias", init=init, forward=forward, score_bias=3)
    assert "typo_bias" not in registry.names("positional") and "int_bias" not in registry.names("positional")

    with pytest.raises(ValueError, match="Drafted.init takes self, but the class is used as a namespace"):
        @registry.register_positional("drafted")
        class Drafted:
            def init(self, config, rng):
                return {}

            def forward(self, params, x, positions, config, need_cache=None):
                return x, None
    assert "drafted" not in registry.names("positional")

    try:  # a class of plain functions (or static methods) is a namespace, and registers
        @registry.register_positional("as_namespace")
        class AsNamespace:
            def init(config, rng):
                return {}

            @staticmethod
            def forward(params, x, positions, config, need_cache=None):
                return x, None
        model = GPT(ModelConfig.preset("toy", positional="as_namespace"))
        assert model.forward(np.array([[1, 2]])).shape == (1, 2, 64)
    finally:
        registry.unregister("positional", "as_namespace")


@pytest.mark.parametrize("field, value, words", [
    ("dropout", "0.1", "dropout='0.1' must be a number in [0, 1)"),
    ("dropout", None, "dropout=None must be a number in [0, 1)"),
    ("init_std", float("inf"), "init_std=inf must be a finite positive number"),
    ("norm_eps", float("inf"), "norm_eps=inf must be a finite positive number"),
    ("rope_base", True, "rope_base=True must be a finite positive number"),
])
def test_config_numbers_must_be_finite_numbers(field, value, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        ModelConfig.preset("toy", **{field: value})
    assert ModelConfig.preset("toy", **{field: np.float32(0.5) if field == "dropout" else np.float64(2.0)})


def test_generate_takes_numpy_ints_and_checks_the_seed():
    model, prompt = GPT("toy"), np.array([[1]])
    assert np.array_equal(model.generate(prompt, np.int64(2), seed=np.int64(4)), model.generate(prompt, 2, seed=4))
    for seed in (1.5, -1, True):
        with pytest.raises(ValueError, match=f"seed must be a non-negative int, a numpy Generator or None, got {seed}"):
            model.generate(prompt, 2, seed=seed)
