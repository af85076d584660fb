"""The mixture of experts' figures and the numbers behind them: known answers, then real data drawn."""

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.feedforward import moe
from minitransformer.figures import moe as moe_figures
from minitransformer.kit import compare
from minitransformer.model import GPT
from minitransformer.costs import estimate_flops_per_token
from minitransformer.scaleout import real_routing
from minitransformer.training import TrainConfig, Trainer

MOE = dict(ffn="moe", n_experts=8, experts_per_token=2, n_shared_experts=1, d_expert=8)


def drawn(fig) -> bool:
    fig.canvas.draw() if hasattr(fig.canvas, "draw") else None
    return bool(fig.axes) and any(ax.has_data() for ax in fig.axes)


def test_load_imbalance_by_hand():
    assert moe.load_imbalance([None, np.array([4, 0, 2, 2]), np.array([1, 1])]).tolist() == [2.0, 1.0]


def test_routing_matrix_puts_each_gate_under_its_expert():
    ids, gates = np.array([[2, 0], [1, 2]]), np.array([[0.7, 0.3], [0.6, 0.4]])
    m = moe_figures.routing_matrix(ids, gates, 3)
    assert m.tolist() == [[0.3, 0.0, 0.7], [0.0, 0.6, 0.4]]


def test_dense_equivalent_has_the_same_active_parameters_but_the_router():
    cfg = ModelConfig.preset("toy", **{**MOE, "n_experts": 16}, bias=False)
    dense = moe.dense_equivalent(cfg)
    assert dense.ffn == "swiglu" and dense.d_ff == (2 + 1) * 8
    a, b = GPT(cfg, seed=0), GPT(dense, seed=0)
    assert a.num_active_params - b.num_active_params == cfg.n_layers * (32 * 16 + 16)  # W_router, b_router
    assert a.num_params - a.num_active_params == cfg.n_layers * (16 - 2) * 3 * 32 * 8  # the skipped experts
    assert estimate_flops_per_token(cfg) - estimate_flops_per_token(dense) == 2 * cfg.n_layers * 32 * 16


@pytest.fixture(scope="module")
def trained():
    """Two short runs on random tokens, with and without the bias update; their load histories."""
    tokens = np.random.default_rng(0).integers(0, 64, 20000)
    out = {}
    for gamma in (0.0, 0.01):
        model = GPT(ModelConfig.preset("toy", **MOE, n_layers=1, balance_speed=gamma), seed=0)
        trainer = Trainer(model, tokens, config=TrainConfig(steps=120, batch_size=8, lr=3e-3, warmup=2,
                                                            eval_every=0), log=None)
        history = []
        for _ in range(120):
            trainer.train_step()
            history.append(moe.load_imbalance(model.last_expert_load))
        out[gamma] = (model, np.array(history))
    return out


def test_bias_balancing_lowers_the_imbalance_and_the_figure_draws_it(trained):
    late = {g: h[-30:].mean() for g, (_, h) in trained.items()}
    assert late[0.01] < late[0.0]
    fig = moe_figures.load_balance({"no bias update": trained[0.0][1], "bias update": trained[0.01][1]}, 8, 2,
                                   smooth=5)
    assert drawn(fig) and len(fig.axes[0].lines) == 4  # two runs, even load, collapse


def test_routing_map_of_a_real_forward(trained):
    model = trained[0.01][0]
    ids = np.array([[3, 9, 27, 17, 51, 25]])
    _, cache = model.run_with_cache(ids)
    e, g = cache["expert_ids", 0][0], cache["gates", 0][0]  # (T, K)
    m = moe_figures.routing_matrix(e, g, 8)
    assert np.allclose(m.sum(axis=1), 1.0) and ((m > 0).sum(axis=1) == 2).all()  # normalised gates, K = 2
    assert drawn(moe_figures.routing_map(e, g, [str(i) for i in ids[0]], 8))


def test_dense_vs_moe_figure_from_compare():
    base = ModelConfig.preset("toy", vocab_size=300, context_length=32, **MOE, n_layers=1)
    result = compare({"MoE": base, "dense": moe.dense_equivalent(base)}, steps=4, batch_size=2, corpus="tiny",
                     eval_every=2)
    fig = moe_figures.dense_vs_moe(result, tokens_per_step=2 * 32)
    assert drawn(fig)
    flops = {name: line.get_xdata() for name, line in zip(result.runs, fig.axes[1].lines)}
    ratio = estimate_flops_per_token(base) / estimate_flops_per_token(moe.dense_equivalent(base))
    assert np.allclose(flops["MoE"] / flops["dense"], ratio)  # the x axis is FLOPs, not steps


def test_routed_traffic_figure():
    table = np.array([[2, 3], [0, 2], [2, 3], [0, 1]])
    reports = {"hand-made": real_routing.dispatch_report(table, 2, 2, 4, hidden=10, k=4)}
    assert drawn(moe_figures.routed_traffic(reports))
