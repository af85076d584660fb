"""Scale-out topologies and routing: the paper's counts, path shapes, conservation, and routing policies."""

import numpy as np
import pytest

from minitransformer.scaleout import metrics
from minitransformer.scaleout.routing import POLICIES, ecmp_hash, route, splitmix64
from minitransformer.scaleout.costs import dragonfly, ft3, ft3_switch_hops, slimfly, table3
from minitransformer.scaleout.topology import KINDS, ft2, ideal_mpft, mpft, mrft
from minitransformer.scaleout.traffic import Traffic, alltoall_uniform, bisection, permutation, ring_allreduce

NIC, LEAF_SPINE, NVLINK = (KINDS.index(k) for k in ("nic", "leaf_spine", "nvlink"))


# ---------------------------------------------------------------------- ISCA Table 3
def test_table3_counts_are_the_papers():
    paper = {  # endpoints, switches, links (ISCA Table 3)
        "FT2": (2048, 96, 2048), "MPFT": (16384, 768, 16384), "FT3": (65536, 5120, 131072),
        "SF": (32928, 1568, 32928), "DF": (261632, 16352, 384272),
    }
    rows = table3()
    for name, (endpoints, switches, links) in paper.items():
        assert (rows[name]["endpoints"], rows[name]["switches"], rows[name]["links"]) == (endpoints, switches, links), name


def test_table3_costs():
    rows = table3()
    # the flat price is fitted to FT2 and FT3, so those and MPFT = 8 x FT2 are exact
    assert rows["FT2"]["cost_usd"] == pytest.approx(9e6)
    assert rows["FT3"]["cost_usd"] == pytest.approx(491e6)
    assert rows["MPFT"]["cost_usd"] == pytest.approx(8 * rows["FT2"]["cost_usd"])
    assert round(rows["MPFT"]["cost_per_endpoint_usd"] / 1e3, 2) == 4.39
    assert round(rows["FT3"]["cost_per_endpoint_usd"] / 1e3, 1) == 7.5
    # Slim Fly and Dragonfly use the paper's length-dependent cables: only approximately
    assert rows["SF"]["cost_usd"] == pytest.approx(146e6, rel=0.01)
    assert rows["DF"]["cost_usd"] == pytest.approx(1522e6, rel=0.025)
    assert rows["MPFT"]["cost_per_endpoint_usd"] < rows["SF"]["cost_per_endpoint_usd"] < rows["FT3"]["cost_per_endpoint_usd"]


def test_mpft_full_size():
    t = mpft(64)
    assert t.n_gpus == 16384 == 8 * 64 ** 2 // 2
    assert t.n_leaves == 8 * 64 and t.n_spines == 32
    assert t.counts()["switches"] // t.planes == 96  # one FT2 per plane
    assert metrics.bisection_GBps(t) == pytest.approx(409.6e3)  # 8 x 51.2 TB/s
    assert metrics.bisection_GBps(ft2(64)) == pytest.approx(51.2e3)


@pytest.mark.parametrize("builder", [lambda: mpft(8, nodes=20), lambda: mrft(8, rails=4), lambda: ft2(8),
                                     lambda: ideal_mpft(8, planes=4, nodes=12)])
def test_no_switch_uses_more_than_k_ports(builder):
    t = builder()
    switches = np.arange(t.n_gpus, t.n_gpus + t.n_leaves + t.planes * t.n_spines)
    # in 400G-port equivalents: the ideal multi-port NIC's lanes are 400G ports broken out into P
    out_ports = np.bincount(t.src, t.capacity, minlength=t.dst.max() + 1)[switches] / 50.0
    in_ports = np.bincount(t.dst, t.capacity, minlength=t.dst.max() + 1)[switches] / 50.0
    assert out_ports.max() <= t.k and in_ports.max() <= t.k
    np.testing.assert_allclose(out_ports, in_ports)  # every cable is two directed links
    up = np.bincount(t.src[t.kind == LEAF_SPINE], minlength=t.dst.max() + 1)[t.n_gpus:t.n_gpus + t.n_leaves]
    assert (up == t.k // 2).all()  # every leaf has one uplink per spine of its plane


def test_mpft_gpu_i_is_on_plane_i_and_leaf_groups():
    t = mpft(8, nodes=10)  # 4 nodes per leaf
    gpu = np.arange(t.n_gpus)
    assert (t.gpu_plane() == gpu % 8).all()
    node = gpu // 8
    assert (t.port_leaf - t.port_plane * 3 == node // 4).all()  # 3 leaves per plane


def test_ft3_structure():
    f = ft3(4)
    assert f["counts"]["endpoints"] == 16 and f["counts"]["switches"] == 20 and f["counts"]["links"] == 32
    deg = np.bincount(np.concatenate([f["src"], f["dst"]]))
    assert (deg[:8] == 2).all() and (deg[8:16] == 4).all() and (deg[16:] == 4).all()  # edge, agg, core
    assert ft3_switch_hops(64, [0, 0, 0, 0], [31, 32, 1023, 1024]).tolist() == [1, 3, 3, 5]


@pytest.mark.parametrize("call, words", [
    (lambda: mpft(7), "even"), (lambda: ft2(0), "even"), (lambda: mpft(8, nodes=33), "more ports"),
    (lambda: mpft(8, planes=8, gpus_per_node=4), "planes"), (lambda: mrft(8, rails=8, nodes=5), "ports"),
    (lambda: slimfly(27), "multiple of 4"), (lambda: dragonfly(4, 2, 2, 10), "global links"),
    (lambda: mpft(8, nodes=0), "positive"), (lambda: mpft(8).fail_spine(8, 0), "no spine"),
])
def test_invalid_topologies(call, words):
    with pytest.raises(ValueError, match=words):
        call()


# ---------------------------------------------------------------------- paths
def _random_traffic(n_gpus, n_flows, seed=0):
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n_gpus, n_flows), rng.integers(0, n_gpus, n_flows)
    keep = src != dst
    return Traffic(src[keep], dst[keep], rng.uniform(1, 10, keep.sum()), flow_id=np.arange(keep.sum()))


CASES = [(mpft(8, nodes=12), "pxn_src"), (mpft(8, nodes=12), "fwd_dst"), (mrft(8, rails=4, nodes=8), "pxn_src"),
         (ft2(8, endpoints=30), "pxn_src"), (ideal_mpft(8, planes=4, nodes=12), "multiport")]


@pytest.mark.parametrize("topo, cross", CASES, ids=lambda x: getattr(x, "name", x))
@pytest.mark.parametrize("policy", POLICIES)
def test_paths_are_connected_start_and_end_right_and_stay_in_plane(topo, cross, policy):
    t = _random_traffic(topo.n_gpus, 300)
    r = route(topo, t, policy, cross, return_paths=True)
    for row, f in zip(r.paths, r.path_flow):
        links = row[row >= 0]
        assert len(links) >= 2
        assert topo.src[links[0]] == t.src[f] and topo.dst[links[-1]] == t.dst[f]  # from the source GPU to the destination
        assert (topo.dst[links[:-1]] == topo.src[links[1:]]).all()  # each link starts where the last one ended
        net = links[topo.kind[links] != NVLINK]
        assert len(set(topo.plane[net].tolist())) <= 1  # the network leg never changes plane
        if topo.kind[links[0]] == NIC:  # no forward hop before: the source's own NIC (port)
            assert topo.port_gpu[links[0]] == t.src[f]
        n_nvl = int((topo.kind[links] == NVLINK).sum())
        assert n_nvl in (0, 2)  # at most one NVLink hop (out to the NVSwitch and in)
        if len(net) and topo.ports_per_gpu == 1:
            plane_src, plane_dst = topo.gpu_plane()[t.src[f]], topo.gpu_plane()[t.dst[f]]
            assert (n_nvl == 2) == (plane_src != plane_dst and topo.planes > 1)  # forward hop iff planes differ


@pytest.mark.parametrize("topo, cross", CASES, ids=lambda x: getattr(x, "name", x))
@pytest.mark.parametrize("policy", POLICIES)
def test_bytes_are_conserved(topo, cross, policy):
    t = _random_traffic(topo.n_gpus, 400, seed=1)
    r = route(topo, t, policy, cross, return_paths=True)
    assert r.path_bytes.sum() == pytest.approx(t.bytes.sum())  # every flow's bytes are injected once
    n_vertices = max(topo.src.max(), topo.dst.max()) + 1
    inflow = np.bincount(topo.dst, r.load, n_vertices)
    outflow = np.bincount(topo.src, r.load, n_vertices)
    net = outflow - inflow
    sent = np.bincount(t.src, t.bytes, topo.n_gpus)
    received = np.bincount(t.dst, t.bytes, topo.n_gpus)
    np.testing.assert_allclose(net[:topo.n_gpus], sent - received, atol=1e-9)  # GPUs: forwarders pass bytes on
    np.testing.assert_allclose(net[topo.n_gpus:], 0, atol=1e-9)  # switches neither create nor lose bytes
    last = np.array([row[row >= 0][-1] for row in r.paths])  # each sub-flow's final link
    np.testing.assert_allclose(np.bincount(topo.dst[last], r.path_bytes, topo.n_gpus), received)  # delivered


def test_hop_counts():
    t = mpft(8, nodes=8)  # 4 nodes per leaf, 2 leaves per plane
    tr = Traffic([0, 0, 0, 0, 0], [1, 8, 40, 9, 41], np.ones(5))  # same node; same leaf+plane; other leaf; +plane change
    r = route(t, tr)
    assert r.switch_hops.tolist() == [0, 1, 3, 1, 3]
    assert r.nvlink_hops.tolist() == [1, 0, 0, 1, 1]  # MPFT's cross-plane flows add one NVLink hop
    lat = metrics.latency_us(r)
    np.testing.assert_allclose(lat, [3.33, 2.8, 3.7, 2.8 + 3.33, 3.7 + 3.33])
    r = route(mrft(16, rails=8, nodes=16), tr)  # 8 nodes per leaf: nodes 0 and 5 share rail 0's first leaf
    assert r.nvlink_hops.tolist() == [1, 0, 0, 0, 0]  # MRFT: a rail change goes through the spines instead
    assert r.switch_hops.tolist() == [0, 1, 1, 3, 3]


# ---------------------------------------------------------------------- hash and policies
def test_splitmix64_known_values_and_ecmp_determinism():
    assert int(splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF  # SplitMix64's first output from state 0
    a = ecmp_hash(7, np.arange(1000), np.arange(1000) + 1, np.zeros(1000, int))
    assert (a == ecmp_hash(7, np.arange(1000), np.arange(1000) + 1, np.zeros(1000, int))).all()
    assert (a != ecmp_hash(8, np.arange(1000), np.arange(1000) + 1, np.zeros(1000, int))).mean() > 0.99
    topo, tr = mpft(16, nodes=128), ring_allreduce(128, 8, 1e9, interleave=8)
    r1, r2, r3 = route(topo, tr, "ecmp", seed=3), route(topo, tr, "ecmp", seed=3), route(topo, tr, "ecmp", seed=4)
    assert (r1.load == r2.load).all() and not (r1.load == r3.load).all()


def test_spray_reaches_line_rate_on_permutations_and_bisection():
    topo = ft2(16)
    for tr in [permutation(topo.n_gpus, 50e9, seed=2), bisection(topo.n_gpus, 50e9, seed=5)]:
        r = route(topo, tr, "spray")
        assert metrics.completion_time(r) == pytest.approx(1.0)  # 50 GB at 50 GB/s: non-blocking
        assert metrics.per_gpu_bandwidth(r) == pytest.approx(50.0)


def test_ecmp_collides_where_adaptive_static_and_spray_do_not():
    # 8 planes x 16 leaves: every node sends one ring flow to the same position on the next leaf
    topo = mpft(16, nodes=128)
    ring = ring_allreduce(128, 8, 1e9, "rail", interleave=8)
    t = {p: metrics.completion_time(route(topo, ring, p)) for p in POLICIES}
    ideal = metrics.ideal_time(route(topo, ring, "spray"))
    assert t["static"] == pytest.approx(ideal) and t["adaptive"] == pytest.approx(ideal) and t["spray"] == pytest.approx(ideal)
    assert t["ecmp"] >= 2 * ideal  # hashing puts several flows on one uplink
    small = mpft(8, nodes=32)
    a2a = alltoall_uniform(small.n_gpus, 1e6)
    t2 = {p: metrics.completion_time(route(small, a2a, p)) for p in ("ecmp", "adaptive", "spray")}
    assert t2["ecmp"] >= 1.2 * t2["spray"] and t2["adaptive"] <= 1.02 * t2["spray"]
    # a random permutation on one plane: d-mod-k is blind to it, and flow-level adaptive routing
    # beats ECMP but not packet spraying (two flows into one leaf can still meet on a spine)
    plane = ft2(16)
    perm = permutation(plane.n_gpus, 1e9, seed=1)
    t3 = {p: metrics.completion_time(route(plane, perm, p)) for p in POLICIES}
    assert t3["spray"] == pytest.approx(1e9 / 50e9)
    assert t3["static"] > 1.5 * t3["spray"] and t3["ecmp"] > 1.5 * t3["adaptive"] > 1.5 * t3["spray"]


def test_random_hashing_of_32_flows_on_32_uplinks():
    # the illustration of docs/scaleout.md: ~3.5 flows on the worst of 32 uplinks under ECMP, 1 under adaptive routing
    topo = mpft(64, planes=1, nodes=64)  # 2 leaves, 32 spines, 1 GPU per node
    ring = ring_allreduce(64, 1, 1.0, "rail", interleave=32)  # every flow crosses to the other leaf
    # leaf 0's 32 uplinks (leaf 1 throws its own 32 flows independently)
    worst = [metrics.uplink_loads(route(topo, ring, "ecmp", seed=s))[0].max() / ring.bytes[0] for s in range(40)]
    assert 3.0 <= np.mean(worst) <= 4.0  # balls into bins: E[max] = 3.53 for 32 into 32
    assert metrics.uplink_loads(route(topo, ring, "adaptive")).max() / ring.bytes[0] == pytest.approx(1.0)


def test_mpft_matches_mrft_for_all_to_all_when_forwarding_is_fast():
    k, nodes = 16, 16  # 128 GPUs: one leaf per plane (MPFT) / per rail (MRFT)
    a2a = alltoall_uniform(128, 1e6)
    t_mrft = metrics.completion_time(route(mrft(k, rails=8, nodes=nodes), a2a, "adaptive"))
    t_mpft = metrics.completion_time(route(mpft(k, nodes=nodes), a2a, "adaptive", "pxn_src"))
    assert t_mpft == pytest.approx(t_mrft, rel=0.05)
    r = route(mpft(k, nodes=nodes), a2a, "adaptive")
    assert metrics.cross_plane_fraction(r) == pytest.approx(7 / 8)  # NVLink absorbs 7/8 of the traffic
    slow = metrics.completion_time(route(mpft(k, nodes=nodes, nvlink_gbps=10.0), a2a, "adaptive"))
    assert slow > 1.5 * t_mrft  # ... which only works because NVLink is ~4x faster than the NIC
    t_ideal = metrics.completion_time(route(ideal_mpft(k, nodes=nodes), a2a, "adaptive"))
    assert t_ideal == pytest.approx(t_mrft, rel=0.05)


@pytest.mark.parametrize("policy", POLICIES)
def test_a_failed_spine_changes_only_its_plane(policy):
    topo = mpft(8, nodes=16)
    tr = alltoall_uniform(topo.n_gpus, 1e3)
    out = metrics.failure_experiment(topo, tr, plane=3, spine=1, policy=policy)
    assert out["planes_changed"] == [3]
    dead = out["after"].topo.capacity == 0
    assert dead.sum() == 2 * 4 and out["after"].load[dead].sum() == 0  # 4 leaves x (up + down), unused
    others = np.delete(np.arange(8), 3)
    np.testing.assert_allclose(out["per_plane_max_before"][others], out["per_plane_max_after"][others])
    assert out["time_after"] >= out["time_before"]


def test_failure_with_multiport_nics_stays_in_its_plane():
    topo = ideal_mpft(8, planes=4, nodes=16)
    out = metrics.failure_experiment(topo, alltoall_uniform(topo.n_gpus, 1e3), plane=2, spine=0, policy="ecmp")
    assert out["planes_changed"] == [2]


@pytest.mark.parametrize("kwargs, words", [
    (dict(policy="random"), "policy"), (dict(cross_plane="teleport"), "cross_plane"),
    (dict(cross_plane="multiport"), "ideal_mpft"),
])
def test_invalid_routing_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        route(mpft(8, nodes=4), Traffic([0], [9], [1.0]), **kwargs)


def test_invalid_traffic_is_rejected():
    topo = mpft(8, nodes=4)
    with pytest.raises(ValueError, match="outside"):
        route(topo, Traffic([0], [32], [1.0]))
    with pytest.raises(ValueError, match="non-negative"):
        route(topo, Traffic([0], [9], [-1.0]))
    with pytest.raises(ValueError, match="pxn_src"):
        route(ideal_mpft(8, nodes=4), Traffic([0], [9], [1.0]), cross_plane="pxn_src")
