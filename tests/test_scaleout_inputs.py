"""Scale-out inputs: bad arguments are refused by name, and work too big for memory is refused before it starts."""

import tracemalloc

import numpy as np
import pytest

from minitransformer.scaleout import metrics, topology
from minitransformer.scaleout.costs import dragonfly, slimfly
from minitransformer.scaleout.fattree3 import ft3_topology, route_ft3
from minitransformer.scaleout.model_traffic import allreduce_seconds, speedup_curve
from minitransformer.scaleout.routing import route
from minitransformer.scaleout.topology import KINDS, ft2, ideal_mpft, mpft, mrft
from minitransformer.scaleout.traffic import (Traffic, alltoall_uniform, bisection, hierarchical_allreduce,
                                              moe_dispatch, moe_routing, permutation, ring_allreduce)

LEAF_SPINE = KINDS.index("leaf_spine")
SMALL_MOE = dict(nodes=4, gpus_per_node=8, experts=32, top_k=4, max_nodes=2, tokens_per_gpu=8)


# ---------------------------------------------------------------------- topologies and cost formulas
@pytest.mark.parametrize("call, words", [
    (lambda: mpft(8, planes=0), r"planes=0 must be a positive int"),
    (lambda: mpft(8, planes=-2), r"planes=-2 must be a positive int"),
    (lambda: mpft(8, planes=2.5), r"planes=2.5 must be a positive int"),
    (lambda: ideal_mpft(8, planes=0), r"planes=0 must be a positive int"),
    (lambda: mrft(8, rails=-1), r"rails=-1 must be a positive int"),
    (lambda: mrft(8, rails=64), r"rails=64 need a leaf each.*use rails <= 8"),
    (lambda: mpft(8, nic_gbps=-5), r"nic_gbps=-5 must be a positive, finite number of GB/s.*is 50"),
    (lambda: mpft(8, nic_gbps=0), r"nic_gbps=0 must be a positive"),
    (lambda: mpft(8, nvlink_gbps=float("nan")), r"nvlink_gbps=nan must be a positive"),
    (lambda: mrft(8, rails=2, nic_gbps="50"), r"nic_gbps='50' must be a positive"),
    (lambda: ideal_mpft(8, nic_gbps=float("inf")), r"nic_gbps=inf must be a positive, finite"),
    (lambda: ft2(8, nic_gbps=-1.0), r"nic_gbps=-1.0 must be a positive"),
    (lambda: ft3_topology(4, link_gbps=0), r"link_gbps=0 must be a positive"),
    (lambda: mpft(8).fail_spine(1.5, 0), r"no spine 0 in plane 1.5: planes are the ints 0..7"),
    (lambda: mpft(8).fail_spine(0, True), r"no spine True in plane 0"),
    (lambda: slimfly(p=0), r"p=0 must be a positive int"),
    (lambda: slimfly(p=-1), r"p=-1 must be a positive int"),
    (lambda: dragonfly(g=0), r"g=0 must be a positive int"),
    (lambda: dragonfly(g=-1), r"g=-1 must be a positive int"),
    (lambda: dragonfly(g=2.5), r"g=2.5 must be a positive int"),
])
def test_bad_topology_and_cost_arguments_are_refused_by_name(call, words):
    with pytest.raises(ValueError, match=words):
        call()


@pytest.mark.parametrize("k, rails", [(64, 6), (8, 3), (16, 5), (8, 8), (8, 1)])
def test_mrft_default_is_the_largest_size_that_fits(k, rails):
    t = mrft(k, rails=rails)
    assert t.nodes == (k // rails) * (k // 2) and t.gpus_per_node == rails
    assert t.n_leaves == rails * (k // rails) <= k  # every leaf reaches every spine
    spines = np.arange(t.n_gpus + t.n_leaves, t.n_gpus + t.n_leaves + t.n_spines)
    down_ports = np.bincount(t.src[t.kind == LEAF_SPINE], minlength=t.dst.max() + 1)[spines]
    assert (down_ports == t.n_leaves).all() and down_ports.max() <= k
    with pytest.raises(ValueError, match=f"at most {t.nodes} nodes"):
        mrft(k, rails=rails, nodes=t.nodes + 1)
    assert mrft(k, rails=rails, nodes=t.nodes).n_gpus == t.n_gpus


def test_cost_formulas_keep_working_with_valid_parameters():
    assert slimfly(28, p=21)["endpoints"] == slimfly(28)["endpoints"] == 32928
    assert dragonfly(4, 2, 2, np.int64(9))["switches"] == 36


# ---------------------------------------------------------------------- traffic, MoE and the speed-up curve
@pytest.mark.parametrize("kwargs, words", [
    (dict(hidden=0), r"hidden=0 must be a positive int"), (dict(hidden=-7), r"hidden=-7 must be a positive int"),
    (dict(dispatch_bytes=0), r"dispatch_bytes=0 must be a positive.*1 for FP8"),
    (dict(combine_bytes=-2), r"combine_bytes=-2 must be a positive.*2 for BF16"),
    (dict(skew=float("nan")), r"skew=nan must be a finite number >= 0"),
    (dict(skew=-1.0), r"skew=-1.0 must be a finite number >= 0"),
    (dict(experts=0), r"experts=0 must be a positive int"),
])
def test_bad_moe_arguments_are_refused_by_name(kwargs, words):
    with pytest.raises(ValueError, match=words):
        moe_dispatch(**{**SMALL_MOE, **kwargs})


def test_moe_routing_refuses_a_bad_skew_and_returns_a_compact_table():
    with pytest.raises(ValueError, match="skew=inf"):
        moe_routing(4, 16, 4, 4, 2, skew=float("inf"))
    e = moe_routing(64, 256, 8, 8, 4)
    assert e.shape == (64, 8) and e.base is None  # not a view that keeps the (T, E) scores alive


@pytest.mark.parametrize("call, words", [
    (lambda: permutation(1, 1.0), r"n_gpus >= 2"), (lambda: permutation(4, -1.0), r"nbytes=-1.0 must be"),
    (lambda: bisection(4, float("nan")), r"nbytes=nan"), (lambda: alltoall_uniform(4, -3), r"msg_bytes=-3"),
    (lambda: ring_allreduce(2, 2, -1.0), r"nbytes=-1.0"), (lambda: hierarchical_allreduce(2, 2, None), r"nbytes=None"),
])
def test_bad_traffic_arguments_are_refused_by_name(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_a_permutation_of_two_gpus_swaps_them():
    t = permutation(2, 5.0)
    assert t.src.tolist() == [0, 1] and t.dst.tolist() == [1, 0] and t.bytes.tolist() == [5.0, 5.0]


@pytest.mark.parametrize("counts", [[-8], [0], [2.5], [1, 8.0], [], [[1, 8]], ["8"]])
def test_speedup_curve_refuses_what_is_not_a_gpu_count(counts):
    with pytest.raises(ValueError, match="device_counts=.* must be a list of positive ints"):
        speedup_curve(counts, 1e15, 1e9)


def test_speedup_curve_refuses_bad_rates_and_allreduce_seconds_bad_counts():
    with pytest.raises(ValueError, match="device_flops=0 must be a positive"):
        speedup_curve([1, 8], 1e15, 1e9, device_flops=0)
    with pytest.raises(ValueError, match="n_gpus=0 must be a positive int"):
        allreduce_seconds(0, 1e9)
    assert allreduce_seconds(1, 1e9) == 0.0 and allreduce_seconds(8, 1e9) > 0


# ---------------------------------------------------------------------- routing
def test_route_and_failure_experiment_refuse_the_three_layer_tree():
    t, tr = ft3_topology(4), Traffic([0], [5], [1.0])
    with pytest.raises(ValueError, match="route needs a two-layer Topology.*fattree3.route_ft3"):
        route(t, tr)
    with pytest.raises(ValueError, match="failure_experiment .* two-layer Topology.*not modelled on ft3_topology"):
        metrics.failure_experiment(t, tr)
    assert route_ft3(t, tr).switch_hops.tolist() == [5]  # the tree routes with its own function


def test_route_refuses_a_list_of_phases_and_non_int_seeds():
    topo = mpft(8, nodes=4)
    with pytest.raises(ValueError, match=r"route the phases of a list one at a time"):
        route(topo, hierarchical_allreduce(4, 8, 1.0))
    for policy in ("ecmp", "spray"):
        with pytest.raises(ValueError, match="seed=1.5 must be an int"):
            route(topo, Traffic([0], [9], [1.0]), policy, seed=1.5)
    with pytest.raises(ValueError, match="seed='0' must be an int"):
        route_ft3(ft3_topology(4), Traffic([0], [5], [1.0]), seed="0")
    assert route(topo, Traffic([0], [9], [1.0]), seed=np.int64(-3)).switch_hops.tolist() == [1]


# ---------------------------------------------------------------------- the memory guard
def test_work_too_big_for_memory_is_refused_at_once():
    def refuse_all():
        with pytest.raises(ValueError, match=r"16,384 GPUs .* about 12\.0 GiB .* use n_gpus <= 9,459"):
            alltoall_uniform(16384, 1.0)
        with pytest.raises(ValueError, match=r"x 1,000,000,000 tokens .* GiB .* fewer tokens_per_gpu"):
            moe_dispatch(8, tokens_per_gpu=10 ** 9, pool=1024)
        with pytest.raises(ValueError, match=r"GiB .* pass pool="):
            moe_dispatch(8, tokens_per_gpu=10 ** 6)
        with pytest.raises(ValueError, match=r"routing 1,000,000 tokens over 256 experts .* pass pool="):
            moe_routing(10 ** 6)

    assert _peak_bytes(refuse_all) < 2**20  # refused before anything big is allocated


def test_routing_too_many_flows_is_refused(monkeypatch):
    topo, a2a = mpft(8, nodes=8), alltoall_uniform(64, 1.0)
    monkeypatch.setattr(topology, "MEMORY_LIMIT_GIB", 300 * len(a2a) * 2 / 2 ** 30)  # room for 2 rows per flow
    assert route(topo, a2a, "spray").load.sum() > 0
    with pytest.raises(ValueError, match=r"routing 4,032 flows on mpft .* pass return_paths=False"):
        route(topo, a2a, "spray", return_paths=True)  # one row per spine: 4 per flow
    with pytest.raises(ValueError, match=r"routing 4,032 flows on ideal_mpft"):
        route(ideal_mpft(8, nodes=8), a2a)  # one row per plane: 8 per flow
    t3, a2a = ft3_topology(4), alltoall_uniform(16, 1.0)
    monkeypatch.setattr(topology, "MEMORY_LIMIT_GIB", 300 * len(a2a) * 2 / 2 ** 30)
    assert route_ft3(t3, a2a, "spray").load.sum() > 0
    with pytest.raises(ValueError, match=r"routing 240 flows on ft3 .* pass return_paths=False"):
        route_ft3(t3, a2a, "spray", return_paths=True)  # one row per shortest path: up to 4 per flow


def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("call", [
    lambda: moe_dispatch(8, 8, tokens_per_gpu=64),
    lambda: moe_dispatch(16, 8, tokens_per_gpu=256, ep_nodes=8, pool=1024),
    lambda: moe_dispatch(8, 4, experts=64, tokens_per_gpu=32, mode="direct"),
    lambda: alltoall_uniform(512, 1.0),
    lambda: route(mpft(8, nodes=16), alltoall_uniform(128, 1.0), "adaptive"),
])
def test_the_memory_estimate_is_between_the_real_peak_and_twice_it(call, monkeypatch):
    peak = _peak_bytes(call)
    monkeypatch.setattr(topology, "MEMORY_LIMIT_GIB", 0.95 * peak / 2 ** 30)
    with pytest.raises(ValueError, match="GiB of memory"):  # never below what the work really takes
        call()
    monkeypatch.setattr(topology, "MEMORY_LIMIT_GIB", 2 * peak / 2 ** 30)
    call()  # nor so far above that it refuses work that fits


def test_the_documented_full_scale_dispatch_fits():
    moe = moe_dispatch(2048, 8, tokens_per_gpu=4096, ep_nodes=8, pool=4096)  # README and benchmark
    assert moe.tokens == 16384 * 4096
