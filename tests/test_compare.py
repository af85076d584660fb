import pytest

from minitransformer.kit import compare
from minitransformer.core.config import ModelConfig


def test_compare_trains_each_variant_on_the_same_data():
    base = ModelConfig.preset("toy", vocab_size=300, context_length=32)
    result = compare({"learned": base, "none": base.replace(positional="none"), "same": base},
                     steps=8, batch_size=4, corpus="tiny", eval_every=4)
    runs = result.runs
    assert list(runs) == ["learned", "none", "same"]
    # same config, same seed, same data order: identical curves (the comparison is fair)
    assert runs["learned"].losses == runs["same"].losses
    assert runs["learned"].losses != runs["none"].losses
    assert all([s for s, _ in r.evals] == [4, 8] and r.tokens_per_second > 0 for r in runs.values())
    assert "unigram" in result.table() and result.figure().axes


def test_compare_errors():
    with pytest.raises(ValueError, match="at least one"):
        compare({})
    with pytest.raises(ValueError, match="share vocab_size"):
        compare({"a": ModelConfig.preset("toy"), "b": ModelConfig.preset("toy", vocab_size=300)})
