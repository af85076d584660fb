"""The course model in minitransformer/data/course: it loads, it is the size promised, and it still predicts as well
as it did when it was trained."""

import numpy as np
import pytest

from minitransformer.cli import load_course_model
from minitransformer.training.data import data_dir, load_corpus, split_text
from minitransformer.training import evaluate_tokens


@pytest.fixture(scope="module")
def course():
    return load_course_model()


def test_files_are_small_and_plain():
    d = data_dir() / "course"
    sizes = {p.name: p.stat().st_size for p in d.iterdir()}
    assert set(sizes) == {"model.npz", "tokenizer.json"}  # one checkpoint file: arrays and metadata together
    assert sum(sizes.values()) < 5 * 2**20  # a few MB: weights only, no optimizer state


def test_validation_loss_is_below_the_recorded_figure(course):
    model, tok, meta = course
    recorded = meta["extra"]["val_loss_all_windows"]
    _, val_text = split_text(load_corpus("pydoc"))
    loss = evaluate_tokens(model, np.array(tok.encode_ordinary(val_text)))
    # note: the corpus comes from this machine's Python; another version's documentation differs a
    # little, hence the 2 % allowance. On the Python that trained it the figure is reproduced exactly.
    assert loss <= recorded * 1.02
    assert loss < meta["extra"]["unigram_baseline"] - 1.5  # far better than counting tokens


def test_it_writes_words_it_learned(course):
    model, tok, _ = course
    out = model.generate(np.array([tok.encode("The return statement")]), 40, temperature=0.8, top_k=40, seed=0)
    text = tok.decode(out[0])[len("The return statement"):]  # only what the model wrote
    words = {"the", "of", "is", "a", "to", "and", "in", "statement", "function", "value"}
    assert len(words & set(text.lower().split())) >= 3, text
