"""Every figure draws from real data computed by the pipeline (not from made-up arrays)."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from minitransformer import positional
from minitransformer import figures
from minitransformer.core.config import ModelConfig
from minitransformer.training.data import load_corpus
from minitransformer.model import GPT
from minitransformer.tokenizer import Tokenizer
from minitransformer.tokenizer.show import compression_curve, merge_tree
from minitransformer.training import TrainConfig, Trainer


@pytest.fixture(scope="module")
def real():
    text = load_corpus("tiny")
    tok = Tokenizer.train(text, 300)
    model = GPT(ModelConfig.preset("toy", vocab_size=300), seed=0)
    ids = np.array([tok.encode(text)[:16]])
    logits, cache = model.run_with_cache(ids)
    return tok, model, ids, logits, cache, text


def drawn(fig):
    assert isinstance(fig, Figure) and fig.axes
    for ax in fig.axes:  # something was plotted on at least one axis
        if ax.lines or ax.patches or ax.images or ax.collections or ax.texts:
            return True
    raise AssertionError("empty figure")


def test_tokenizer_figures(real):
    tok, _, ids, _, _, text = real
    longest = max(range(256, tok.vocab_size), key=lambda i: len(tok.vocab[i]))
    assert drawn(figures.merge_tree(merge_tree(tok, longest)))
    assert drawn(figures.compression_curve(compression_curve(tok, text, [256, 280, 300])))
    assert drawn(figures.merge_counts(tok.train_result.counts))
    assert drawn(figures.token_boundaries([tok.decode([i]) for i in ids[0].tolist()], ids[0].tolist()))


def test_model_figures(real):
    tok, model, ids, logits, cache, _ = real
    labels = [tok.decode([i]) for i in ids[0].tolist()]
    names = [tok.decode([i]) for i in range(tok.vocab_size)]
    assert drawn(figures.embedding_map(model.params["embed"]["W_E"], ids[0].tolist(), names))
    patterns = np.stack([cache["pattern", i][0] for i in range(model.config.n_layers)])
    fig = figures.attention_patterns(patterns, labels)
    assert drawn(fig) and len(fig.axes) == model.config.n_layers * model.config.n_heads
    assert drawn(figures.positional_heatmap(model.config, 16))
    assert drawn(figures.positional_heatmap(model.config.replace(positional="rope"), 16))
    assert drawn(figures.rope_rotations(np.arange(0, 16, 3), d_head=8))
    assert drawn(figures.similarity_vs_distance(model.params["pos"]["W_pos"]))
    assert drawn(figures.similarity_vs_distance(positional.sinusoidal_table(64, 32)))
    assert drawn(figures.mlp_histograms(cache["pre", 0], cache["post", 0]))
    assert drawn(figures.next_token_bars(np.exp(logits[0, -1]) / np.exp(logits[0, -1]).sum(), names))
    assert drawn(figures.sampling_effects(logits[0, -1], names))
    from minitransformer.trace.lens import logit_lens

    assert drawn(figures.logit_lens(logit_lens(model, cache, k=3), names))
    assert drawn(figures.positional_heatmap(model.config, 16, W_pos=model.params["pos"]["W_pos"]))
    kv = {"MHA": 2 * model.config.n_layers * model.config.d_model * 4}
    assert drawn(figures.kv_cache_size(kv, [16, 64, 256]))


def test_loss_curve_from_a_real_run():
    tokens = np.tile(np.arange(7), 300)
    state = Trainer(GPT("toy"), tokens, config=TrainConfig(steps=6, batch_size=2, eval_every=3), log=None).run()
    assert drawn(figures.loss_curves(state.losses, state.evals, baseline=4.0))
