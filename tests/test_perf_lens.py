"""The performance lens: per-stage FLOPs add up to the model's estimate, times come from one forward."""

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT
from minitransformer.costs import estimate_flops_per_token
from minitransformer.trace import perf
from minitransformer.trace.pipeline import Pipeline
from minitransformer.tokenizer import Tokenizer


@pytest.mark.parametrize("kw", [dict(), dict(attention="mla", positional="rope"), dict(ffn="swiglu", n_kv_heads=2)])
def test_stage_flops_add_up_to_the_models_estimate(kw):
    cfg = ModelConfig.preset("toy", **kw)
    T = 12
    flops = perf.stage_flops(cfg, T)
    assert sum(flops.values()) == T * estimate_flops_per_token(cfg, T)
    assert flops["output"] == T * 2 * cfg.d_model * cfg.vocab_size
    assert flops["embedding"] == 0


def test_costs_are_in_data_flow_order_and_measured():
    model = GPT("toy", seed=0)
    rows = perf.stage_costs(model, np.array([[1, 2, 3, 4, 5, 6]] * 2), repeats=2)
    assert [r["stage"] for r in rows] == list(perf.STAGES)
    assert [r["concept"] for r in rows] == ["classification", "indexing", "retrieval", "processing", "processing"]
    assert all(r["seconds"] > 0 for r in rows)
    assert abs(sum(r["share"] for r in rows) - 1.0) < 1e-9
    assert rows[2]["flops"] == 2 * perf.stage_flops(model.config, 6)["attention"]  # batch of two
    assert "attention" in perf.format_costs(rows)


def test_the_pipeline_reports_performance_and_bad_input_is_refused():
    tok = Tokenizer.train("the cat sat on the mat " * 20, 300)
    model = GPT(ModelConfig.preset("toy", vocab_size=tok.vocab_size), seed=0)
    rows = Pipeline(tok, model).performance("the cat sat", repeats=1)
    assert len(rows) == 5
    with pytest.raises(ValueError, match="at least one position"):
        perf.stage_costs(model, np.zeros((1, 0), int))
    with pytest.raises(ValueError, match="repeats"):
        perf.stage_costs(model, np.array([[1]]), repeats=0)
