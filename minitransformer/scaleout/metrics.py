"""Metrics: what a routed traffic pattern does to the network, in numbers a student can check.

Everything here reads a ``routing.Routed`` (per-link bytes, per-flow hops) and
turns it into: seconds (the fluid completion time T = max over links of
load / capacity: the busiest link finishes last), per-GPU effective bandwidth
(bytes a GPU sends / T), how unevenly the spine uplinks are loaded, hop counts,
the share of traffic that changes plane, and what a failed spine changes.

Latencies come from ISCA Table 5 (IB 2.8 µs same leaf, 3.7 µs across leaves,
NVLink 3.33 µs); they are inputs, not results. The three-layer value (4.6 µs) is
an extrapolation of 0.45 µs per extra switch, not a measurement.

Sources: ISCA 2025 (arXiv 2505.09343) §5.1-5.2, Tables 3-5; DeepSeek-V3 technical
report §3.2.2 (node-limited routing).

Left out: queueing, congestion control, message-size dependent latency, overlap of
computation and communication (see ``model_traffic``).

    >>> from minitransformer.scaleout.topology import ft2
    >>> from minitransformer.scaleout.traffic import permutation
    >>> from minitransformer.scaleout.routing import route
    >>> r = route(ft2(8), permutation(32, 50e9), "spray")
    >>> round(completion_time(r), 6)  # 50 GB over 50 GB/s NICs: one second, line rate
    1.0
"""

from __future__ import annotations

import numpy as np

from minitransformer.scaleout.routing import route
from minitransformer.scaleout.topology import KINDS, Topology
from minitransformer.scaleout.traffic import moe_dispatch

LATENCY_US = dict(ib_same_leaf=2.8, ib_cross_leaf=3.7, roce_same_leaf=3.6, roce_cross_leaf=5.6, nvlink=3.33,
                  ib_cross_pod_extrapolated=4.6)  # ISCA Table 5 (the last is an extrapolation)


def link_seconds(r) -> np.ndarray:
    """(E,) seconds each link needs for its bytes (inf for bytes on a failed link)."""
    cap = r.topo.capacity * 1e9  # GB/s -> B/s
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r.load > 0, r.load / cap, 0.0)


def completion_time(r) -> float:
    """Fluid completion time in seconds; a list of phases (run one after another) adds up."""
    if isinstance(r, (list, tuple)):
        return float(sum(completion_time(x) for x in r))
    t = link_seconds(r)
    return float(t.max()) if len(t) else 0.0


def sent_bytes(r) -> np.ndarray:
    """(n_gpus,) bytes each GPU's flows carry (what the application asked to send)."""
    return np.bincount(r.traffic.src, r.traffic.bytes, minlength=r.topo.n_gpus)


def per_gpu_bandwidth(r, network_only: bool = False) -> float:
    """Mean over sending GPUs of (bytes sent / completion time), in GB/s.

    With ``network_only`` only flows between nodes count; otherwise NVLink-local flows
    count too, like the paper's "logical" DeepEP bandwidth.
    """
    t = r.traffic
    inter = (t.src // r.topo.gpus_per_node) != (t.dst // r.topo.gpus_per_node)
    w = np.where(inter, t.bytes, 0.0) if network_only else t.bytes
    per_gpu = np.bincount(t.src, w, minlength=r.topo.n_gpus)
    T = completion_time(r)
    senders = per_gpu > 0
    return float(per_gpu[senders].mean() / T / 1e9) if T > 0 and senders.any() else 0.0


def utilisation(r) -> dict:
    """Per link kind: the busiest link's load / capacity relative to T (1.0 = it is the bottleneck), and the mean."""
    t, T = link_seconds(r), completion_time(r)
    out = {}
    for code, name in enumerate(KINDS):
        sel = r.topo.kind == code
        if sel.any() and T > 0:
            out[name] = dict(max=float(t[sel].max() / T), mean=float(t[sel].mean() / T))
    return out


def uplink_loads(r) -> np.ndarray:
    """(L, S) bytes on each leaf -> spine uplink."""
    topo = r.topo
    return r.load[topo.up0:topo.down0].reshape(topo.n_leaves, topo.n_spines)


def spine_imbalance(r) -> float:
    """max / mean load over the uplinks of leaves that send across the spines (1.0 = perfectly even)."""
    up = uplink_loads(r)
    busy = up.sum(axis=1) > 0
    if not busy.any():
        return 1.0
    alive = r.topo.spine_alive[r.topo.leaf_plane[busy]]
    return float(up[busy].max() / up[busy][alive].mean())


def hop_histogram(r, by_bytes: bool = False) -> dict:
    """{(switch hops, NVLink hops): number of flows (or bytes)} over inter- and intra-node flows."""
    w = r.traffic.bytes if by_bytes else np.ones(len(r.traffic))
    key = r.switch_hops * 10 + r.nvlink_hops
    keys, inv = np.unique(key, return_inverse=True)
    tot = np.bincount(inv, w)
    return {(int(k // 10), int(k % 10)): float(v) for k, v in zip(keys, tot)}


def latency_us(r) -> np.ndarray:
    """(F,) a latency estimate per flow from ISCA Table 5: the IB path plus 3.33 µs per NVLink hop.

    note: Table 5 measures 1 and 3 switch hops only; for the 5 hops of a three-layer tree
    the 0.9 µs step from 1 to 3 hops is extrapolated (0.45 µs per extra switch): an
    estimate, not a measurement.
    """
    ib = np.select([r.switch_hops == 1, r.switch_hops == 3, r.switch_hops == 5],
                   [LATENCY_US["ib_same_leaf"], LATENCY_US["ib_cross_leaf"], LATENCY_US["ib_cross_pod_extrapolated"]], 0.0)
    return ib + LATENCY_US["nvlink"] * r.nvlink_hops


def cross_plane_fraction(r) -> float:
    """Share of the bytes between nodes whose source and destination GPUs are on different planes."""
    t = r.traffic
    inter = (t.src // r.topo.gpus_per_node) != (t.dst // r.topo.gpus_per_node)
    total = t.bytes[inter].sum()
    return float(t.bytes[r.cross_plane].sum() / total) if total > 0 else 0.0


def network_bytes(r) -> float:
    """Bytes injected into the network: the sum over NIC uplinks."""
    return float(r.load[: r.topo.n_ports].sum())


def bisection_GBps(topo: Topology) -> float:
    """Analytic bisection bandwidth per direction: half the NIC ports at line rate (the trees are non-blocking).

        >>> from minitransformer.scaleout.topology import mpft
        >>> bisection_GBps(mpft(64)) / 1e3  # TB/s, for plane-local traffic
        409.6
    """
    return float(topo.n_ports / 2 * topo.capacity[0])


def summary(r) -> dict:
    """The headline numbers of one routed pattern."""
    return dict(time_s=completion_time(r), per_gpu_GBps=per_gpu_bandwidth(r), spine_imbalance=spine_imbalance(r),
                cross_plane_fraction=cross_plane_fraction(r), network_GB=network_bytes(r) / 1e9)


def ib_bytes_per_token(max_nodes_list, nodes: int = 8, gpus_per_node: int = 8, hidden: int = 7168,
                       tokens_per_gpu: int = 64, seed: int = 0, **moe) -> dict:
    """Network bytes per token (in units of ``hidden``) as the node limit M varies, for three ways of sending.

    ``per_expert`` is one copy per remote expert (the paper's 8t), ``direct`` one per remote
    GPU, ``dedup`` one per remote node (at most M).

        >>> c = ib_bytes_per_token([1, 4], tokens_per_gpu=8)
        >>> c["dedup"][0] <= 1.0 and c["dedup"][1] <= 4.0
        True
    """
    out = dict(M=list(max_nodes_list), per_expert=[], direct=[], dedup=[])
    for M in max_nodes_list:
        m = moe_dispatch(nodes, gpus_per_node, max_nodes=M, tokens_per_gpu=tokens_per_gpu, hidden=hidden,
                         seed=seed, **moe)
        for key in ("per_expert", "direct", "dedup"):
            out[key].append(m.copies[key] / m.tokens)
    return out


def failure_experiment(topo: Topology, traffic, plane: int = 0, spine: int = 0, policy: str = "ecmp",
                       cross_plane: str | None = None, seed: int = 0) -> dict:
    """Route ``traffic`` before and after failing one spine; report which planes' links changed.

    Returns ``planes_changed`` (sorted planes with a link whose load changed; NVLink is
    plane -1), the completion times, and the two routings. ``topo`` is a two-layer fabric
    (``ft2``, ``mpft``, ``mrft``, ``ideal_mpft``): the three-layer tree has no failed links.
    """
    if not isinstance(topo, Topology):
        raise ValueError(f"failure_experiment fails a spine of a two-layer Topology (ft2, mpft, mrft or ideal_mpft), "
                         f"got {type(topo).__name__}; failed links are not modelled on ft3_topology")
    before = route(topo, traffic, policy, cross_plane, seed)
    failed = topo.fail_spine(plane, spine)
    after = route(failed, traffic, policy, cross_plane, seed)
    changed = ~np.isclose(before.load, after.load, rtol=1e-12, atol=1e-6)
    return dict(planes_changed=sorted(set(topo.plane[changed].tolist())), time_before=completion_time(before),
                time_after=completion_time(after), before=before, after=after,
                per_plane_max_before=_per_plane_max(before), per_plane_max_after=_per_plane_max(after))


def _per_plane_max(r) -> np.ndarray:
    """(P,) the busiest network link's seconds in each plane."""
    t = link_seconds(r)
    net = r.topo.plane >= 0
    return np.array([t[net & (r.topo.plane == p)].max() for p in range(r.topo.planes)])


def ideal_time(r) -> float:
    """A lower bound: the busiest NIC (bytes in or out over its capacity), as if the fabric were perfect."""
    topo = r.topo
    nic = topo.kind == 0
    return float((r.load[nic] / (topo.capacity[nic] * 1e9)).max()) if nic.any() else 0.0


__all__ = ["LATENCY_US", "bisection_GBps", "completion_time", "cross_plane_fraction",
           "failure_experiment", "hop_histogram", "ib_bytes_per_token", "ideal_time", "latency_us", "link_seconds",
           "network_bytes", "per_gpu_bandwidth", "sent_bytes", "spine_imbalance", "summary", "uplink_loads",
           "utilisation"]
