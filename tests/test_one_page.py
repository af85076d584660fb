"""The one-page model computes the same logits as the package, on the course model and on fresh models."""

from pathlib import Path

import numpy as np
import pytest

from minitransformer import one_page
from minitransformer.cli import load_course_model
from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT


def test_it_equals_the_course_models_logits():
    model, tokenizer, _ = load_course_model()
    ids = np.array([tokenizer.encode("The return statement leaves a function and")])
    ours = one_page.forward(model.params, model.config, ids)
    assert np.abs(ours - model.forward(ids)).max() < 1e-4  # float64 page against the float32 model


@pytest.mark.parametrize("seed", [0, 1])
def test_it_equals_a_fresh_models_logits_on_a_batch(seed):
    model = GPT(ModelConfig.preset("toy", n_layers=3), seed=seed)
    ids = np.random.default_rng(seed).integers(0, model.config.vocab_size, size=(3, 12))
    assert np.abs(one_page.forward(model.params, model.config, ids) - model.forward(ids)).max() < 1e-5


@pytest.mark.parametrize("change", [dict(positional="rope"), dict(ffn="swiglu"), dict(n_kv_heads=2),
                                    dict(norm="rmsnorm"), dict(tie_embeddings=False)])
def test_other_variants_are_refused_by_name(change):
    model = GPT(ModelConfig.preset("toy", **change), seed=0)
    with pytest.raises(ValueError, match="one-page model is written for the course model"):
        one_page.forward(model.params, model.config, np.array([[1, 2]]))


def test_it_fits_on_a_page(capsys):
    lines = Path(one_page.__file__).read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 160
    assert one_page.main(["The", "return"]) == 0
    assert "%" in capsys.readouterr().out
