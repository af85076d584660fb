"""The three-layer fat-tree as link arrays: counts against costs.ft3 and Table 3, paths, conservation, policies."""

import doctest

import numpy as np
import pytest

from minitransformer.scaleout import fattree3
from minitransformer.scaleout import metrics
from minitransformer.scaleout.costs import ft3, ft3_switch_hops, table3
from minitransformer.scaleout.fattree3 import ft3_topology, route_ft3
from minitransformer.scaleout.routing import POLICIES
from minitransformer.scaleout.topology import KINDS, ft2
from minitransformer.scaleout.traffic import Traffic, alltoall_uniform, bisection, permutation

NIC, EDGE_AGG, AGG_CORE = (KINDS.index(k) for k in ("nic", "edge_agg", "agg_core"))


def _random_traffic(n, n_flows, seed=0):
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, n_flows), rng.integers(0, n, n_flows)
    keep = src != dst
    return Traffic(src[keep], dst[keep], rng.uniform(1, 10, keep.sum()), flow_id=np.arange(keep.sum()))


def test_docstring_examples():
    result = doctest.testmod(fattree3, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------- counts and structure
@pytest.mark.parametrize("k", [2, 4, 8, 16, 64])
def test_counts_equal_costs_ft3(k):
    c, ref = ft3_topology(k).counts(), ft3(k)["counts"]
    assert {key: c[key] for key in ("endpoints", "switches", "links")} == \
        {key: ref[key] for key in ("endpoints", "switches", "links")}
    assert c["cost_usd"] == pytest.approx(ref["cost_usd"])
    h = k // 2
    assert (c["endpoints"], c["switches"], c["links"]) == (k ** 3 // 4, 5 * k * k // 4, 2 * k ** 3 // 4)
    assert ft3_topology(k).n_links == 6 * k * h * h  # NIC, edge-agg, agg-core: both directions each


def test_table3_ft3_row():
    c = ft3_topology(64).counts()
    assert (c["endpoints"], c["switches"], c["links"]) == (65536, 5120, 131072)  # ISCA Table 3
    assert c["cost_usd"] == pytest.approx(table3()["FT3"]["cost_usd"]) == pytest.approx(491e6)


@pytest.mark.parametrize("k", [4, 8])
def test_switch_links_are_those_of_costs_ft3_and_every_switch_has_k_ports(k):
    t, ref = ft3_topology(k), ft3(k)
    n = t.n_gpus
    up = (t.kind != NIC) & (t.src < t.dst)  # the upward direction of each switch cable
    ours = sorted(zip((t.src[up] - n).tolist(), (t.dst[up] - n).tolist(), t.kind[up].tolist()))
    assert ours == sorted(zip(ref["src"].tolist(), ref["dst"].tolist(), ref["kind"].tolist()))  # same cables, kinds
    n_v = n + 5 * k * k // 4
    out_deg, in_deg = np.bincount(t.src, minlength=n_v), np.bincount(t.dst, minlength=n_v)
    assert (out_deg[:n] == 1).all() and (in_deg[:n] == 1).all()  # one NIC per endpoint
    assert (out_deg[n:] == k).all() and (in_deg[n:n + k * k] == k).all()  # edge and aggregation: k ports
    assert (in_deg[n + k * k:] == k).all()  # core: one port per pod
    pairs = set(zip(t.src.tolist(), t.dst.tolist()))
    assert all((b, a) in pairs for a, b in pairs)  # every cable is two directed links
    assert len(pairs) == t.n_links  # no duplicates
    assert set(t.kind.tolist()) == {NIC, EDGE_AGG, AGG_CORE} and (t.capacity == 50.0).all()


@pytest.mark.parametrize("k", [0, 3, 7, -4, 4.0, True, "8"])
def test_invalid_k_is_a_clear_error(k):
    with pytest.raises(ValueError, match="even int"):
        ft3_topology(k)


def test_invalid_capacity_is_a_clear_error():
    with pytest.raises(ValueError, match="positive"):
        ft3_topology(4, nic_gbps=0.0)


def test_invalid_routing_arguments():
    t = ft3_topology(4)
    with pytest.raises(ValueError, match="policy"):
        route_ft3(t, Traffic([0], [5], [1.0]), "random")
    with pytest.raises(ValueError, match="outside"):
        route_ft3(t, Traffic([0], [16], [1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        route_ft3(t, Traffic([0], [5], [-1.0]))
    with pytest.raises(ValueError, match="ft3_topology"):
        route_ft3(ft2(4), Traffic([0], [5], [1.0]))


# ---------------------------------------------------------------------- paths and conservation
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("k", [4, 8])
def test_paths_start_and_end_at_the_right_nic_and_are_shortest(k, policy):
    t = ft3_topology(k)
    tr = _random_traffic(t.n_gpus, 300, seed=k)
    r = route_ft3(t, tr, policy, return_paths=True)
    hops = ft3_switch_hops(k, tr.src, tr.dst)
    assert (r.switch_hops == hops).all()
    for row, f in zip(r.paths, r.path_flow):
        links = row[row >= 0]
        assert t.src[links[0]] == tr.src[f] and t.dst[links[-1]] == tr.dst[f]  # the source's NIC, the destination's
        assert t.kind[links[0]] == NIC == t.kind[links[-1]]
        assert (t.dst[links[:-1]] == t.src[links[1:]]).all()  # connected
        assert len(links) - 1 == hops[f]  # 1, 3 or 5 switches
    counts = np.bincount(r.path_flow, minlength=len(tr))
    if policy == "spray":  # every shortest path once: 1, k/2 or (k/2)² per flow
        assert (counts == np.select([hops == 1, hops == 3], [1, k // 2], (k // 2) ** 2)).all()
        assert len({(f, *row) for f, row in zip(r.path_flow.tolist(), r.paths.tolist())}) == len(r.paths)  # distinct
    else:
        assert (counts == 1).all()


@pytest.mark.parametrize("policy", POLICIES)
def test_injected_bytes_are_delivered(policy):
    t = ft3_topology(8)
    tr = _random_traffic(t.n_gpus, 500, seed=1)
    tr = Traffic(np.append(tr.src, 3), np.append(tr.dst, 3), np.append(tr.bytes, 7.0))  # plus one flow to itself
    r = route_ft3(t, tr, policy, return_paths=True)
    net = tr.src != tr.dst
    assert r.path_bytes.sum() == pytest.approx(tr.bytes[net].sum())
    n_v = max(t.src.max(), t.dst.max()) + 1
    balance = np.bincount(t.src, r.load, n_v) - np.bincount(t.dst, r.load, n_v)
    sent = np.bincount(tr.src[net], tr.bytes[net], t.n_gpus)
    received = np.bincount(tr.dst[net], tr.bytes[net], t.n_gpus)
    np.testing.assert_allclose(balance[:t.n_gpus], sent - received, atol=1e-9)
    np.testing.assert_allclose(balance[t.n_gpus:], 0, atol=1e-9)  # switches neither create nor lose bytes
    np.testing.assert_allclose(r.load[t.n_gpus:2 * t.n_gpus], received)  # delivered on the NIC downlinks
    assert metrics.network_bytes(r) == pytest.approx(sent.sum())
    np.testing.assert_allclose(np.bincount(t.dst[r.paths[:, -1]], r.path_bytes, t.n_gpus), received)  # NIC down
    expect = np.zeros(t.n_links)  # loads equal the sum over the listed paths
    np.add.at(expect, r.paths[r.paths >= 0], np.broadcast_to(r.path_bytes[:, None], r.paths.shape)[r.paths >= 0])
    np.testing.assert_allclose(r.load, expect, atol=1e-9)
    assert r.switch_hops[-1] == 0 and metrics.hop_histogram(r)[(0, 0)] == 1


def test_hop_counts_match_ft3_switch_hops():
    t = ft3_topology(64)
    tr = Traffic([0, 0, 0, 0, 0], [1, 31, 32, 1023, 1024], np.ones(5))
    r = route_ft3(t, tr, "ecmp")
    assert r.switch_hops.tolist() == ft3_switch_hops(64, tr.src, tr.dst).tolist() == [1, 1, 3, 3, 5]
    links = np.bincount(t.kind[r.load > 0], r.load[r.load > 0], 5)  # bytes x links of each kind
    assert links[[NIC, EDGE_AGG, AGG_CORE]].tolist() == [10.0, 6.0, 2.0]


# ---------------------------------------------------------------------- policies
def test_spray_is_non_blocking_on_permutations_and_bisection():
    t = ft3_topology(16)
    for tr in [permutation(t.n_gpus, 50e9, seed=2), bisection(t.n_gpus, 50e9, seed=5)]:
        r = route_ft3(t, tr, "spray")
        assert metrics.completion_time(r) == pytest.approx(1.0)  # 50 GB at 50 GB/s: line rate
        assert metrics.per_gpu_bandwidth(r) == pytest.approx(50.0)
        assert metrics.completion_time(r) == pytest.approx(metrics.ideal_time(r))


def test_ecmp_is_deterministic_per_seed_and_worse_than_spray():
    t = ft3_topology(8)
    perm = permutation(t.n_gpus, 50e9, seed=1)
    r1, r2, r3 = (route_ft3(t, perm, "ecmp", seed=s) for s in (3, 3, 4))
    assert (r1.load == r2.load).all() and not (r1.load == r3.load).all()
    spray = metrics.completion_time(route_ft3(t, perm, "spray"))
    for seed in range(3):
        assert metrics.completion_time(route_ft3(t, perm, "ecmp", seed=seed)) >= 2 * spray  # hash collisions
    a = metrics.completion_time(route_ft3(t, perm, "adaptive"))
    assert spray < a < metrics.completion_time(r1)  # flow-level adaptive: better than hashing, not spraying


def test_adaptive_and_spray_on_all_to_all():
    t = ft3_topology(4)
    a2a = alltoall_uniform(t.n_gpus, 1e6)
    times = {p: metrics.completion_time(route_ft3(t, a2a, p)) for p in POLICIES}
    assert times["spray"] == pytest.approx(metrics.ideal_time(route_ft3(t, a2a, "spray")))  # the NICs are the limit
    assert times["adaptive"] <= 1.2 * times["spray"] < times["ecmp"]
    r = route_ft3(t, a2a, "spray")
    assert metrics.spine_imbalance(r) == pytest.approx(1.0)  # every edge uplink carries the same bytes
    assert metrics.cross_plane_fraction(r) == 0.0


def test_static_d_mod_k_never_shares_a_downlink_in_a_permutation():
    t = ft3_topology(8)
    r = route_ft3(t, permutation(t.n_gpus, 1.0, seed=0), "static")
    down = np.r_[t.ae0:t.ac0, t.ca0:t.n_links]  # agg -> edge and core -> agg: one destination each
    assert r.load[down].max() == pytest.approx(1.0)


def test_latency_of_a_cross_pod_flow_is_the_flagged_extrapolation():
    from minitransformer.scaleout.metrics import LATENCY_US, latency_us
    from minitransformer.scaleout.traffic import Traffic

    topo = ft3_topology(4)
    t = Traffic(np.array([0, 0, 0]), np.array([1, 2, 15]), np.array([1.0, 1.0, 1.0]))  # same edge, same pod, other pod
    lat = latency_us(route_ft3(topo, t, "ecmp"))
    assert lat.tolist() == [LATENCY_US["ib_same_leaf"], LATENCY_US["ib_cross_leaf"], LATENCY_US["ib_cross_pod_extrapolated"]]
