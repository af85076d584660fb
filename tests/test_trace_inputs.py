"""What the trace is given: a text longer than the context, text that is not a str, top_k, hook names."""

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT
from minitransformer.tokenizer import Tokenizer
from minitransformer.trace.page import page_data
from minitransformer.trace.pipeline import Pipeline

LONG = "the cat sat on the mat and the dog sat on the log and then they ran away together quickly"


@pytest.fixture(scope="module")
def pipeline():
    tok = Tokenizer.train("the cat sat on the mat " * 20, 300)
    return Pipeline(tok, GPT(ModelConfig.preset("toy", vocab_size=300), seed=0))  # context_length 16


def test_a_text_longer_than_the_context_is_cropped_and_step_one_says_so(pipeline):
    tok, model = pipeline.tokenizer, pipeline.model
    ids = tok.encode(LONG)
    L, M = model.config.context_length, len(ids)
    assert M > L
    steps = pipeline.trace(LONG)
    assert steps[0].arrays["tokenize.hook_ids"] == ids  # step 1 shows every id of the text
    logits, cache = model.run_with_cache(np.array([ids[-L:]]))  # the later steps see the last L only
    assert np.array_equal(steps[1].arrays["hook_embed"], cache["hook_embed"])
    assert np.array_equal(steps[-1].arrays["hook_logits"], logits)
    crop = (f"the first {M - L} of {M} tokens are cropped to fit the context of {L}: "
            f"only the last {L} go on through the model")
    assert crop in steps[0].describe()
    assert page_data(tok, model, LONG, max_new_tokens=0)["distinction"]["cropped"] == M - L  # the page's count
    assert "cropped" not in pipeline.trace("the cat")[0].describe()


@pytest.mark.parametrize("text, kind", [(b"the cat", "bytes"), (123, "int"), (None, "NoneType")])
def test_text_that_is_not_a_str_is_refused_before_any_work(pipeline, text, kind):
    with pytest.raises(TypeError, match=f"text must be a str, got {kind}"):
        pipeline.steps(text)  # at the call, not at the first step
    with pytest.raises(TypeError, match=f"text must be a str, got {kind}"):
        pipeline.to_html(text)
    with pytest.raises(TypeError, match=f"text must be a str, got {kind}"):
        pipeline.performance(text)
    with pytest.raises(ValueError, match="the text is empty"):
        pipeline.steps("")


@pytest.mark.parametrize("top_k", [0, -1, 2.5, True, "3", 301])
def test_top_k_must_be_an_int_within_the_vocabulary(pipeline, top_k):
    with pytest.raises(ValueError, match=r"top_k=.* must be an int in 1\.\.300"):
        pipeline.steps("the cat", top_k=top_k)
    with pytest.raises(ValueError, match=r"top_k=.* must be an int in 1\.\.300 .*or None"):
        pipeline.to_html("the cat", top_k=top_k, max_new_tokens=0)  # refused even with nothing to sample


def test_a_numpy_int_top_k_works(pipeline):
    final = pipeline.trace("the cat", top_k=np.int64(3))[-1]
    assert len(final.show().axes[0].patches) == 3  # the figure's bars: the 3 likeliest next tokens
    data = page_data(pipeline.tokenizer, pipeline.model, "the cat", top_k=np.int64(5), max_new_tokens=2)
    assert data["generation"]["top_k"] == 5 and type(data["generation"]["top_k"]) is int  # JSON-ready


IDS = np.array([[5, 9, 2, 7, 1]])


@pytest.mark.parametrize(
    "names_filter, message",
    [
        ("blocks.0.attn.hook_patern", "did you mean 'blocks.0.attn.hook_pattern'"),
        (["hook_logits", "blocks.1.hook_resid_psot"], "did you mean 'blocks.1.hook_resid_post'"),
        ("blocks.7.hook_resid_pre", "layer 7 does not publish 'blocks.{i}.hook_resid_pre' \\(layers 0..1 do\\)"),
        (["hook_embed", 3], "names must be strings"),
    ],
)
def test_run_with_cache_refuses_a_name_the_model_does_not_publish(names_filter, message):
    with pytest.raises(ValueError, match=message):
        GPT("toy").run_with_cache(IDS, names_filter=names_filter)


def test_names_are_checked_against_the_layers_that_publish_them():
    moe = GPT(ModelConfig.preset("toy", ffn="moe", n_experts=4, first_dense_layers=1), seed=0)
    with pytest.raises(ValueError, match="layer 0 does not publish 'blocks.{i}.mlp.hook_expert_ids'"):
        moe.run_with_cache(IDS, names_filter="blocks.0.mlp.hook_expert_ids")
    _, cache = moe.run_with_cache(IDS, names_filter="blocks.1.mlp.hook_expert_ids")
    assert list(cache.keys()) == ["blocks.1.mlp.hook_expert_ids"]
    # a function is the caller's own test of each name: it may match nothing
    assert len(GPT("toy").run_with_cache(IDS, names_filter=lambda n: n == "hook_patern")[1]) == 0
