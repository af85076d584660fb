"""Run the examples in the docstrings, so the documentation cannot drift from the code."""

import doctest
import importlib

import pytest

MODULES = [
    "minitransformer.concepts",
    "minitransformer.data",
    "minitransformer.nn",
    "minitransformer.config",
    "minitransformer.testing",
    "minitransformer.embedding",
    "minitransformer.positional",
    "minitransformer.attention",
    "minitransformer.feedforward",
    "minitransformer.model",
    "minitransformer.train",
    "minitransformer.trace",
    "minitransformer.viz",
    "minitransformer.compare",
    "minitransformer.registry",
    "minitransformer.safetensors_io",
    "minitransformer.gpt2",
    "minitransformer.tokenizer.hf_export",
    "minitransformer.tokenizer",
    "minitransformer.tokenizer.bpe",
    "minitransformer.tokenizer.patterns",
    "minitransformer.tokenizer.core",
    "minitransformer.tokenizer.train_reference",
    "minitransformer.tokenizer.train_fast",
    "minitransformer.tokenizer.files",
    "minitransformer.tokenizer.show",
    "minitransformer.page.build",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no docstring example"
