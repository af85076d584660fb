"""Shared fixtures: small texts and tokenizers trained once per test session."""

import pytest

from minitransformer.training.data import load_corpus, split_text
from minitransformer.tokenizer import Tokenizer


@pytest.fixture(scope="session")
def pydoc_text() -> str:
    return load_corpus("pydoc")


@pytest.fixture(scope="session")
def multilingual_text() -> str:
    return load_corpus("multilingual")


@pytest.fixture(scope="session")
def tok(pydoc_text) -> Tokenizer:
    """A 1024-token GPT-4-pattern tokenizer trained on the training part of the pydoc corpus."""
    train, _ = split_text(pydoc_text)
    return Tokenizer.train(train, 1024, special_tokens=["<|endoftext|>", "<|pad|>"])


@pytest.fixture(scope="session")
def held_out(pydoc_text) -> str:
    return split_text(pydoc_text)[1]
