"""Scale-out traffic, metrics and the model tie-in: MoE node-limited routing, collectives, the paper's arithmetic."""

import doctest
import importlib
import time

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.scaleout import metrics
from minitransformer.scaleout.model_traffic import DEEPSEEK_V3, count_params, deepseek_v3_params_per_gpu, ep_time_per_layer, speedup_curve, step_traffic, time_per_output_token
from minitransformer.scaleout.routing import route
from minitransformer.scaleout.topology import mpft
from minitransformer.scaleout.traffic import alltoall_uniform, bisection, hierarchical_allreduce, moe_dispatch, moe_routing, permutation, ring_allreduce

SCALEOUT_MODULES = ["minitransformer.scaleout", "minitransformer.scaleout.topology", "minitransformer.scaleout.costs",
                    "minitransformer.scaleout.routing",
                    "minitransformer.scaleout.traffic", "minitransformer.scaleout.metrics",
                    "minitransformer.scaleout.model_traffic", "minitransformer.figures.scaleout"]


@pytest.mark.parametrize("name", SCALEOUT_MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------- node-limited routing
def _reference_routing(logits, groups, M, K):
    """Token by token, in plain Python: the M nodes with the best top-(K/M) sums, then the top K experts there."""
    scores = 1 / (1 + np.exp(-logits.astype(np.float64)))
    per = logits.shape[1] // groups
    out = []
    for row in scores:
        node_score = [sorted(row[g * per:(g + 1) * per])[-(K // M):] for g in range(groups)]
        nodes = sorted(range(groups), key=lambda g: -sum(node_score[g]))[:M]
        candidates = [e for g in nodes for e in range(g * per, (g + 1) * per)]
        out.append(set(sorted(candidates, key=lambda e: -row[e])[:K]))
    return out


def test_node_limited_routing_matches_a_token_by_token_reference():
    T, E, K, groups, M = 200, 64, 8, 8, 4
    experts = moe_routing(T, E, K, groups, M, rng=np.random.default_rng(3))
    logits = np.random.default_rng(3).standard_normal((T, E), dtype=np.float32)  # the same draws
    assert [set(row) for row in experts.tolist()] == _reference_routing(logits, groups, M, K)


@pytest.mark.parametrize("M", [1, 2, 4, 8])
def test_every_token_gets_exactly_k_experts_on_at_most_m_nodes(M):
    e = moe_routing(500, 256, 8, 8, M, rng=np.random.default_rng(M), skew=1.0)
    assert e.shape == (500, 8)
    assert all(len(set(row)) == 8 for row in e.tolist())  # K distinct experts
    nodes = [len(set(row)) for row in (e // 32).tolist()]
    assert max(nodes) <= M and (M == 1 or min(nodes) >= 2)


def test_dispatch_counts_network_copies_8t_to_mt():
    G, T, M, hidden = 8, 32, 4, 7168
    m = moe_dispatch(8, G, 256, 8, M, tokens_per_gpu=T, hidden=hidden, seed=1)
    src_node = (np.arange(m.tokens) // T) // G  # tokens are ordered by source GPU
    exp_node, exp_gpu = m.experts // 32, m.experts // 4
    per_expert = (exp_node != src_node[:, None]).sum()
    direct = sum(len({g for g in row if g // G != s}) for row, s in zip(exp_gpu.tolist(), src_node))
    dedup = sum(len(set(row) - {s}) for row, s in zip(exp_node.tolist(), src_node))
    assert (m.copies["per_expert"], m.copies["direct"], m.copies["dedup"]) == (per_expert, direct, dedup)
    assert m.copies["dedup"] <= M * m.tokens < m.copies["per_expert"] <= 8 * m.tokens  # 8t -> Mt
    # the network carries exactly one copy per remote node, on the sender's own plane
    inter = m.dispatch.src // G != m.dispatch.dst // G
    assert m.dispatch.bytes[inter].sum() == pytest.approx(dedup * hidden)
    assert (m.dispatch.src[inter] % G == m.dispatch.dst[inter] % G).all()
    # NVLink fan-out: every (token, expert GPU) pair not reached by the network copy itself
    fan = sum(len({g for g in row if g % G != (t // T) % G}) for t, row in enumerate(exp_gpu.tolist()))
    assert m.dispatch.bytes[~inter].sum() == pytest.approx(fan * hidden)
    assert m.combine.bytes.sum() == pytest.approx(2 * m.dispatch.bytes.sum())  # BF16 back, FP8 out
    assert (m.combine.src == m.dispatch.dst).all()


def test_direct_mode_sends_one_copy_per_remote_gpu():
    m = moe_dispatch(4, 8, 64, 8, 2, tokens_per_gpu=16, hidden=100, mode="direct", seed=2)
    inter = m.dispatch.src // 8 != m.dispatch.dst // 8
    assert m.dispatch.bytes[inter].sum() == pytest.approx(m.copies["direct"] * 100)
    assert m.copies["dedup"] <= m.copies["direct"] <= m.copies["per_expert"]


def test_dedup_dispatch_never_crosses_planes_and_pool_agrees_with_exact():
    topo = mpft(8, nodes=8)
    exact = moe_dispatch(8, 8, tokens_per_gpu=64, seed=0)
    r = route(topo, exact.dispatch)
    assert metrics.cross_plane_fraction(r) == 0.0 and r.nvlink_hops[r.switch_hops > 0].max() == 0
    pooled = moe_dispatch(8, 8, tokens_per_gpu=64, seed=0, pool=2048)
    assert pooled.copies["dedup"] / pooled.tokens == pytest.approx(exact.copies["dedup"] / exact.tokens, rel=0.03)
    direct = route(topo, moe_dispatch(8, 8, tokens_per_gpu=64, mode="direct").dispatch)
    assert metrics.cross_plane_fraction(direct) > 0.8  # one copy per GPU mostly changes plane


@pytest.mark.parametrize("kwargs, words", [
    (dict(nodes=2, max_nodes=4), "max_nodes"), (dict(nodes=8, experts=100), "split evenly"),
    (dict(nodes=8, mode="fast"), "mode"), (dict(nodes=8, ep_nodes=3), "multiple"), (dict(nodes=0), "positive"),
])
def test_invalid_moe_parameters(kwargs, words):
    with pytest.raises(ValueError, match=words):
        moe_dispatch(**kwargs)


def test_ib_bytes_per_token_falls_from_8t_towards_mt():
    c = metrics.ib_bytes_per_token([1, 2, 4, 8], tokens_per_gpu=16)
    assert all(d <= M for d, M in zip(c["dedup"], c["M"]))
    assert np.all(np.diff(c["dedup"]) > 0)
    assert all(6.5 <= x <= 7.5 for x in c["per_expert"])  # 8 experts, 7 of 8 nodes remote: ~7 copies whatever M
    assert all(x >= y for x, y in zip(c["direct"], c["dedup"]))


# ---------------------------------------------------------------------- collectives
def test_ring_allreduce_flows():
    rail = ring_allreduce(6, 8, 6.0, "rail")
    assert (rail.src % 8 == rail.dst % 8).all() and rail.bytes[0] == pytest.approx(2 * 5 / 6 * 6.0)
    flat = ring_allreduce(6, 8, 6.0, "flat")
    boundary = flat.src // 8 != flat.dst // 8
    assert boundary.sum() == 6 and (flat.src[boundary] % 8 == 7).all() and (flat.dst[boundary] % 8 == 0).all()
    inter = ring_allreduce(16, 1, 1.0, interleave=4)
    assert (inter.src // 4 != inter.dst // 4).all()  # every hop to another leaf group of 4
    assert sorted(inter.dst.tolist()) == list(range(16))  # one ring: everyone receives once
    with pytest.raises(ValueError, match="ring"):
        ring_allreduce(4, 8, 1.0, "star")


def test_hierarchical_allreduce_beats_a_flat_ring_on_mpft():
    topo = mpft(8, nodes=16)
    hier = metrics.completion_time([route(topo, t, "adaptive") for t in hierarchical_allreduce(16, 8, 1e9)])
    flat = metrics.completion_time(route(topo, ring_allreduce(16, 8, 1e9, "flat"), "adaptive"))
    # a flat ring moves ~2B through one NIC per node; the hierarchical one splits it over 8 planes
    assert flat == pytest.approx(2 * 127 / 128 * 1e9 / 50e9)
    assert hier < 0.5 * flat


def test_stress_patterns():
    p = permutation(64, 1.0, seed=3)
    assert sorted(p.dst.tolist()) == list(range(64)) and (p.src != p.dst).all()
    b = bisection(64, 1.0, seed=3)
    assert sorted(b.src.tolist()) == list(range(64)) and sorted(b.dst.tolist()) == list(range(64))
    assert len(alltoall_uniform(5, 1.0)) == 20
    with pytest.raises(ValueError, match="even"):
        bisection(5, 1.0)


def test_metrics_on_a_known_pattern():
    topo = mpft(8, nodes=8)
    r = route(topo, alltoall_uniform(64, 1e6), "spray")
    hist = metrics.hop_histogram(r)
    # from GPU (n, i): 7 in-node (NVLink), 3 same leaf same plane, 4 other leaf same plane,
    # 21 same leaf other plane (+NVLink), 28 other leaf other plane (+NVLink)
    assert hist == {(0, 1): 64 * 7, (1, 0): 64 * 3, (3, 0): 64 * 4, (1, 1): 64 * 21, (3, 1): 64 * 28}
    assert metrics.cross_plane_fraction(r) == pytest.approx(49 / 56)
    assert metrics.network_bytes(r) == pytest.approx(64 * 56 * 1e6)
    u = metrics.utilisation(r)
    assert max(v["max"] for v in u.values()) == pytest.approx(1.0)


# ---------------------------------------------------------------------- the model and the paper's arithmetic
def test_the_papers_ep_arithmetic():
    assert ep_time_per_layer() == pytest.approx(120.96e-6)
    assert time_per_output_token() == pytest.approx(14.75712e-3)
    assert round(time_per_output_token() * 1e3, 2) == 14.76 and int(1 / time_per_output_token()) == 67
    assert ep_time_per_layer(hidden=7168) == pytest.approx(123.86e-6, rel=1e-4)  # "7K" is 7,000 in the paper


@pytest.mark.parametrize("cfg", [ModelConfig.preset("toy"), ModelConfig.preset("tiny"),
                                 ModelConfig.preset("small", ffn="swiglu", norm="rmsnorm", bias=False,
                                                    tie_embeddings=False, n_kv_heads=2, positional="rope"),
                                 ModelConfig.preset("toy", ffn="moe", n_experts=8, first_dense_layers=1),
                                 ModelConfig.preset("toy", ffn="moe", n_shared_experts=0, expert_ffn="gelu",
                                                    dense_ffn="gelu", first_dense_layers=1, d_expert=12)])
def test_count_params_matches_the_model(cfg):
    from minitransformer.model import GPT
    assert count_params(cfg) == GPT(cfg).num_params


def test_step_traffic_for_deepseek_v3_and_ours():
    split = deepseek_v3_params_per_gpu()
    assert split["routed"] == 58 * 256 * 3 * 7168 * 2048
    assert split["dense"] + split["routed"] == DEEPSEEK_V3["params"]
    d = step_traffic("deepseek-v3", tokens_per_gpu=64, topo=mpft(8, nodes=16), pool=512)
    assert d["allreduce_bytes"] == pytest.approx(2 * split["per_gpu"])
    assert d["network_copies_per_token"] <= 4 and d["dispatch_time_s"] > 0 and d["allreduce_time_s"] > 0
    assert d["combine_time_s"] == pytest.approx(2 * d["dispatch_time_s"])
    ours = step_traffic(ModelConfig.preset("small"), topo=mpft(8, nodes=2))
    assert ours["allreduce_bytes"] == 2 * count_params(ModelConfig.preset("small")) and "dispatch_time_s" not in ours
    moe_ours = step_traffic(ModelConfig.preset("small"), tokens_per_gpu=32, topo=mpft(8, nodes=2), experts=64)
    assert moe_ours["moe_layers"] == 6 and moe_ours["network_copies_per_token"] <= 1  # 2 nodes: one remote at most
    assert moe_ours["dispatch_bytes_per_gpu"] > 0 and moe_ours["dispatch_time_s"] > 0
    moe_cfg = ModelConfig.preset("toy", ffn="moe", n_experts=16, experts_per_token=4, first_dense_layers=1)
    own = step_traffic(moe_cfg, tokens_per_gpu=8, topo=mpft(8, nodes=2), max_nodes=2)  # its own 16 experts, K = 4
    assert own["moe_layers"] == 1 and own["network_copies_per_token"] <= 1 and own["dispatch_time_s"] > 0
    with pytest.raises(ValueError, match="deepseek-v3"):
        step_traffic("gpt-5")


def test_speedup_curve():
    c = speedup_curve([1, 2, 8, 64, 1024], step_flops=1e17, grad_bytes_total=10e9)
    assert c["scale_out"][0] == 1.0
    assert np.all(np.diff(c["scale_out"]) > 0) and np.all(c["scale_out"] <= c["devices"])
    assert np.all(np.diff(c["efficiency"]) <= 1e-12)  # communication eats a growing share
    overlapped = speedup_curve([1, 2, 8, 64, 1024], step_flops=1e17, grad_bytes_total=10e9, overlap=True)
    assert np.all(overlapped["scale_out"] >= c["scale_out"])
    with pytest.raises(ValueError, match="multiple of 8"):
        speedup_curve([12], 1e15, 1e9)


def test_full_scale_16384_gpus_in_seconds():
    t0 = time.perf_counter()
    topo = mpft(64)
    moe = moe_dispatch(topo.nodes, 8, tokens_per_gpu=64, ep_nodes=8, pool=512)
    r = route(topo, moe.dispatch, "ecmp")
    assert topo.n_gpus == 16384 and moe.tokens == 16384 * 64
    assert metrics.cross_plane_fraction(r) == 0.0 and r.switch_hops.max() == 1  # an 8-node EP group sits under one leaf
    assert metrics.completion_time(r) > 0
    assert time.perf_counter() - t0 < 20


# ---------------------------------------------------------------------- figures
def test_figures_draw_what_they_are_given():
    from minitransformer.figures import scaleout as plots

    topo = mpft(4, planes=2, nodes=4).fail_spine(1, 0)
    fig = plots.topology(topo)
    ax = fig.axes[0]
    # one line per NIC cable and per leaf uplink
    assert len(ax.lines) == topo.n_ports + topo.n_leaves * topo.n_spines
    with pytest.raises(ValueError, match="too many"):
        plots.topology(mpft(64))
    bars = plots.grouped_bars({"a": {"x": 1.0, "y": 2.0}, "b": {"x": 3.0, "y": 4.0}}, ylabel="t")
    heights = sorted(p.get_height() for p in bars.axes[0].patches)
    assert heights == [1.0, 2.0, 3.0, 4.0]
    c = metrics.ib_bytes_per_token([1, 2], tokens_per_gpu=4)
    assert len(plots.bytes_per_token(c).axes[0].lines) == 4
    assert len(plots.failure([1.0, 2.0], [1.0, 3.0]).axes[0].patches) == 4
    s = speedup_curve([1, 8], 1e15, 1e9)
    assert len(plots.speedup(s).axes[0].lines) == 3
    assert len(plots.uplink_profiles({"ecmp": [3, 1, 0], "spray": [2, 2, 0]}).axes[0].lines) == 3
