import json

import pytest

from minitransformer.core.config import PRESETS, ModelConfig


def test_presets_and_derived_sizes():
    tiny = ModelConfig.preset("tiny")
    assert (tiny.vocab_size, tiny.context_length, tiny.d_model, tiny.n_layers, tiny.n_heads) == (1024, 128, 128, 4, 4)
    small = ModelConfig.preset("small")
    assert (small.vocab_size, small.context_length, small.d_model, small.n_layers, small.n_heads) == (4096, 256, 256, 6, 8)
    assert tiny.d_head == 32 and tiny.kv_heads == 4 and tiny.ff_width == 512
    assert ModelConfig.preset("tiny", ffn="swiglu").ff_width == 344  # 8/3 * 128 = 341.3, rounded up to a multiple of 8
    assert set(PRESETS) >= {"toy", "tiny", "small"}


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(positional="alibi"), "positional='alibi' is not valid; choose one of 'learned', 'sinusoidal', 'rope', 'none'"),
        (dict(ffn="relu"), "choose one of 'gelu', 'swiglu'"),
        (dict(norm="batchnorm"), "'layernorm', 'rmsnorm'"),
        (dict(d_model=30, n_heads=4), "divisible by n_heads"),
        (dict(n_heads=4, n_kv_heads=3), "divisible by n_kv_heads"),
        (dict(d_model=24, n_heads=8, positional="rope"), "d_head=3 must be even"),
        (dict(vocab_size=0), "vocab_size=0 must be a positive int"),
        (dict(dropout=1.0), "dropout"),
        (dict(tie_embeddings="yes"), "must be True or False"),
    ],
)
def test_invalid_configs_say_what_is_valid(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig(**kw)


def test_json_round_trip_and_unknown_keys():
    cfg = ModelConfig.preset("toy", positional="rope", n_kv_heads=2)
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError, match="unknown config keys \\['n_embd'\\]"):
        ModelConfig.from_dict({"n_embd": 3})
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ModelConfig.preset("huge")
    with pytest.raises(Exception):
        cfg.d_model = 3  # frozen
