"""The kit's answers to what it cannot use: nested params, unnamed variants, configs compare cannot compare."""

import types

import numpy as np
import pytest

from minitransformer.core import registry
from minitransformer.core.config import ModelConfig
from minitransformer.kit import check_stage, compare

GELU = registry.get("ffn", "gelu")


def nested_init(config, rng):
    return {"inner": GELU.init(config, rng)}  # a dict inside the dict


def nested_forward(params, x, config, need_cache=None):
    return GELU.forward(params["inner"], x, config, need_cache)


def test_an_init_that_returns_nested_dicts_fails_every_check_with_the_reason():
    report = check_stage("ffn", {"init": nested_init, "forward": nested_forward})
    reason = "init must return a flat dict of arrays; 'inner' is a dict"
    assert not report.ok and report.failed()
    assert len(report.failed()) == len(report.checks)  # no check can read such params: none passes
    assert all(c.detail.startswith(reason) for c in report.checks), str(report)
    assert "AttributeError" not in str(report)
    report = check_stage("ffn", {"init": lambda config, rng: [np.zeros(3)], "forward": nested_forward})
    assert all(c.detail.startswith("init must return a flat dict of arrays") and "got list" in c.detail
               for c in report.checks), str(report)


def test_a_variant_given_as_functions_is_reported_under_its_registered_name():
    fns = types.SimpleNamespace(init=GELU.init, forward=GELU.forward, backward=GELU.backward)
    registry.register_ffn("kit_test_gelu")(fns)  # registered from a namespace, as the decorator does
    try:
        report = check_stage("ffn", fns)
        assert report.variant == "kit_test_gelu" and report.ok
        assert str(report).startswith("check_stage('ffn', 'kit_test_gelu'): all passed")
    finally:
        registry.unregister("ffn", "kit_test_gelu")
    # not registered: named for what it is, never "SimpleNamespace"
    assert check_stage("ffn", {"init": GELU.init, "forward": nested_forward}).variant == "a dict of functions"
    # the registered init and forward with a backward of one's own are not that variant
    own = check_stage("ffn", {"init": GELU.init, "forward": GELU.forward, "backward": lambda p, c, dy: GELU.backward(p, c, dy)})
    assert own.variant == "a dict of functions" and own.ok


@pytest.mark.parametrize("configs", [[ModelConfig.preset("toy", vocab_size=300)], "toy", None])
def test_compare_wants_a_dict_of_name_to_config(configs):
    with pytest.raises(TypeError, match="configs must be a dict of name -> ModelConfig"):
        compare(configs, steps=1)


def test_compare_names_what_is_wrong_with_the_configs():
    with pytest.raises(TypeError, match=r"configs must map names to ModelConfig, got \{'b': 'str'\}"):
        compare({"a": ModelConfig.preset("toy", vocab_size=300), "b": "toy"}, steps=1)
    with pytest.raises(ValueError, match=r"vocab_size=64, .* at least 257 ids .* vocab_size=300"):
        compare({"a": ModelConfig.preset("toy")}, steps=1)  # the config's own 64, not the tokenizer's 63
    with pytest.raises(ValueError, match=r"share vocab_size .* \{'a': 64, 'b': 300\}"):
        compare({"a": ModelConfig.preset("toy"), "b": ModelConfig.preset("toy", vocab_size=300)}, steps=1)


def test_compare_refuses_configs_that_differ_in_context_length():
    base = ModelConfig.preset("toy", vocab_size=300)
    with pytest.raises(ValueError, match=r"share context_length .* \{'short': 16, 'long': 32\}"):
        compare({"short": base, "long": base.replace(context_length=32)}, steps=1)
    result = compare({"long": base.replace(context_length=32)}, steps=2, batch_size=2, corpus="tiny", eval_every=2)
    assert result.runs["long"].config.context_length == 32
