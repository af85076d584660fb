"""Shared fixtures: small texts and tokenizers trained once per test session.

The suite runs on as many worker processes as the machine has cores (pytest-xdist,
``-n auto`` in pyproject.toml). Each worker then keeps its linear algebra to one
thread: two workers each running two BLAS threads on two cores contend, and
contended BLAS threads are many times slower than one thread each. The notebooks'
kernels inherit the setting.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    try:  # numpy may have been loaded before this file (then the variables above come too late for it)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass

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
