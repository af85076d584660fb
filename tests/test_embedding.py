import numpy as np
from hypothesis import given, settings, strategies as st
import pytest

from minitransformer import embedding
from minitransformer.core.config import ModelConfig
from minitransformer.kit import gradcheck


def test_lookup_and_gradient_with_repeated_ids():
    rng = np.random.default_rng(0)
    W_E = rng.normal(size=(10, 4))
    ids = np.array([[3, 3, 7], [0, 3, 9]])  # id 3 three times
    x, cache = embedding.forward({"W_E": W_E}, ids)
    assert np.array_equal(x, W_E[ids]) and cache["hook_embed"] is x
    dx = rng.normal(size=x.shape)
    _, grads = embedding.backward({"W_E": W_E}, cache, dx)
    expected = np.zeros_like(W_E)
    np.add.at(expected, ids.reshape(-1), dx.reshape(-1, 4))  # the slow, obviously right way
    assert np.allclose(grads["W_E"], expected)
    report = gradcheck(lambda a: embedding.forward(a, ids)[0], {"W_E": W_E}, grads, dx)
    assert report.ok, str(report)


def test_scatter_rows_handles_empty_input():
    assert embedding.scatter_rows(np.array([], int), np.zeros((0, 3)), 5).shape == (5, 3)


@pytest.mark.parametrize(
    "ids, message",
    [
        (np.array([1, 2]), "wrap one sequence as ids\\[None, :\\]"),
        (np.array([[1, 2]], dtype=float), "must be integers"),
        (np.array([[1, 99]]), "token id 99 is outside the vocabulary 0..9"),
        (np.array([[-1, 2]]), "token id -1"),
    ],
)
def test_bad_ids(ids, message):
    with pytest.raises(ValueError, match=message):
        embedding.forward({"W_E": np.zeros((10, 2), np.float32)}, ids)


def test_init_is_seeded_float32_and_nearest_finds_the_class():
    cfg = ModelConfig.preset("toy")
    a = embedding.init(cfg, np.random.default_rng(5))["W_E"]
    assert a.dtype == np.float32 and np.array_equal(a, embedding.init(cfg, np.random.default_rng(5))["W_E"])
    W = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert [i for i, _ in embedding.nearest(W, 0, k=3)] == [1, 2, 3]


@given(ids=st.lists(st.integers(0, 9), min_size=0, max_size=40))
@settings(max_examples=200, deadline=None)
def test_scatter_rows_sums_repeated_ids_as_add_at_does(ids):
    # the embedding's backward: single ids are copied, repeated ones summed (fast path), same as np.add.at
    ids = np.array(ids, dtype=np.int64)
    rows = np.random.default_rng(len(ids)).normal(size=(len(ids), 3))
    want = np.zeros((10, 3))
    np.add.at(want, ids, rows)
    np.testing.assert_allclose(embedding.scatter_rows(ids, rows, 10), want, rtol=1e-12, atol=1e-12)
