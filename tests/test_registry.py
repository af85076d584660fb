"""Registries: a student's variant, registered by name, is used by the config, model, trainer and trace."""

import numpy as np
import pytest

from minitransformer import positional
from minitransformer.core import registry
from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT
from minitransformer.kit import check_stage
from minitransformer.training import TrainConfig, Trainer


def alibi_bias(q_positions, k_positions, config):
    """ALiBi (Press et al., 2022): head h subtracts slope_h * distance from its scores."""
    H = config.n_heads
    slopes = 2.0 ** (-8.0 * np.arange(1, H + 1) / H)  # (H,)
    distance = np.asarray(q_positions)[:, None] - np.asarray(k_positions)[None, :]  # (T, S)
    return -slopes[:, None, None] * np.maximum(distance, 0)  # (H, T, S)


@pytest.fixture
def alibi():
    def init(config, rng):
        return {}

    def forward(params, x, positions, config, need_cache=None):
        return x, {}

    def backward(params, cache, dy):
        return dy, {}

    registry.register_positional("alibi_test", init=init, forward=forward, backward=backward, score_bias=alibi_bias)
    yield "alibi_test"
    registry.unregister("positional", "alibi_test")


def test_builtins_are_registered_in_order():
    assert registry.names("positional") == ("learned", "sinusoidal", "rope", "none")
    assert registry.names("attention") == ("mha", "mla")
    assert registry.names("ffn") == ("gelu", "swiglu", "moe", "none")


def test_a_registered_variant_is_used_by_config_model_trainer_and_trace(alibi):
    cfg = ModelConfig.preset("toy", positional=alibi)
    model = GPT(cfg, seed=0)
    ids = np.array([[1, 2, 3, 4, 5, 6]])
    _, cache = model.run_with_cache(ids)
    # the bias reached the scores: without positions the model would be blind to order; with ALiBi,
    # the scores of a head fall off with distance by exactly the bias
    no_pos = GPT(ModelConfig.preset("toy", positional="none"), seed=0)
    _, plain = no_pos.run_with_cache(ids)
    with np.errstate(invalid="ignore"):  # -inf - -inf on the masked future
        diff = cache["scores", 0] - plain["scores", 0]
    finite = np.isfinite(diff)
    assert np.allclose(diff[finite], np.broadcast_to(alibi_bias(np.arange(6), np.arange(6), cfg)[None], diff.shape)[finite], atol=1e-5)
    state = Trainer(model, np.tile(np.arange(9), 200), config=TrainConfig(steps=3, batch_size=2, eval_every=0), log=None).run()
    assert state.step == 3
    assert np.array_equal(model.generate(ids, 4, use_cache=True, temperature=0.0), model.generate(ids, 4, use_cache=False, temperature=0.0))
    assert check_stage("positional", alibi).ok


def test_registration_errors():
    with pytest.raises(ValueError, match="already registered"):
        registry.register_positional("rope", init=positional.init, forward=positional.forward)
    with pytest.raises(ValueError, match=r"missing \['forward'\]"):
        registry.register_ffn("half", init=lambda c, r: {})
    with pytest.raises(ValueError, match="unknown kind"):
        registry.register("norm", "x", init=len, forward=len)
    with pytest.raises(ValueError, match="cannot be removed"):
        registry.unregister("attention", "mha")
    with pytest.raises(ValueError, match="not a registered variant; choose one of 'gelu', 'swiglu'"):
        registry.get("ffn", "relu")
    with pytest.raises(ValueError, match="or register your own"):
        ModelConfig(positional="alibi_missing")


def test_a_forward_only_variant_runs_but_cannot_train():
    from minitransformer.feedforward import mlp, output

    registry.register_ffn("draft", init=lambda c, rng: mlp.init(c.replace(ffn="gelu"), rng),
                          forward=lambda p, x, c, need_cache=None:
                          mlp.forward(p, x, c.replace(ffn="gelu"), need_cache=need_cache))
    try:
        model = GPT(ModelConfig.preset("toy", ffn="draft"), seed=0)
        ids = np.array([[1, 2, 3]])
        assert model.forward(ids).shape == (1, 3, 64)
        model.loss(ids[:, :-1], ids[:, 1:])
        with pytest.raises(ValueError, match="ffn variant 'draft' has no backward, so it cannot be trained"):
            model.backward()
    finally:
        registry.unregister("ffn", "draft")


def test_decorator_form():
    @registry.register_positional("decorated_none")
    class Nothing:
        init = staticmethod(lambda config, rng: {})
        forward = staticmethod(lambda params, x, positions, config, need_cache=None: (x, {}))
        backward = staticmethod(lambda params, cache, dy: (dy, {}))

    try:
        assert registry.get("positional", "decorated_none").forward is Nothing.forward
        assert GPT(ModelConfig.preset("toy", positional="decorated_none")).forward(np.array([[1]])).shape == (1, 1, 64)
    finally:
        registry.unregister("positional", "decorated_none")
