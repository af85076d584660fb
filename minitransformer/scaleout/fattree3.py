"""The three-layer fat-tree (FT3) as link arrays, and flows routed over it arithmetically.

A k-ary fat-tree (Al-Fares et al.) of k-port switches has k pods; each pod has k/2
edge switches (k/2 ports down to endpoints, k/2 up) and k/2 aggregation switches
(k/2 ports down, one to each edge switch of the pod, and k/2 up); (k/2)² core
switches each have one port to every pod. That is k³/4 endpoints, 5k²/4 switches
and 2·k³/4 switch-to-switch cables, full bisection: the FT3 row of ISCA Table 3
at k = 64 (65,536 endpoints, 5,120 switches, 131,072 links), built here link by
link. ``costs.ft3`` counts the same tree; ``costs.ft3_switch_hops`` gives its
path lengths, which the routes here reproduce.

Data model. With h = k/2, endpoint ``x`` hangs from edge switch ``e = x // h``
(edge e = pod·h + i), aggregation switch ``a = pod·h + j`` is the j-th of its pod,
and core ``c = j·h + m`` connects to aggregation switch j of every pod. Vertices
are endpoints [0, n), then edges n + e, aggregations n + k·h + a, cores
n + 2·k·h + c (the layers of ``costs.ft3``, shifted by the n endpoints). Directed
links come in six blocks of n = k³/4 each, so a path is arithmetic::

    [0, n)             endpoint x -> its edge switch                (kind "nic")
    [n, 2n)            edge switch -> endpoint x                    (kind "nic")
    ea0 + e·h + j      edge e -> aggregation j of its pod           (kind "edge_agg")
    ae0 + e·h + j      aggregation j of e's pod -> edge e           (kind "edge_agg")
    ac0 + a·h + m      aggregation a -> core (a mod h)·h + m        (kind "agg_core")
    ca0 + a·h + m      core (a mod h)·h + m -> aggregation a        (kind "agg_core")

A path is 1 switch (same edge), 3 (same pod: up to aggregation j and down, h
choices) or 5 (across pods: up to aggregation j, core (j, m), down through
aggregation j of the other pod; h² choices). The policies of ``routing`` pick
(j, m): ``ecmp`` hashes (source, destination, flow id) with ``routing.ecmp_hash``;
``static`` is d-mod-k (j = the destination's position on its edge, m = its edge's
index in its pod, in the spirit of Al-Fares' suffix tables); ``adaptive`` places
each pod's flows, largest first, on the path whose busiest link is least loaded
so far (pods act in parallel: the flows of one round, one per pod, do not see each
other); ``spray`` splits every flow evenly over all its shortest paths. The result
is a ``routing.Routed``, so ``metrics`` reads it (edge switches play the leaves,
and their uplinks the leaf uplinks, in ``uplink_loads`` and ``spine_imbalance``).

Sizes: n endpoints, h = k/2, F flows, R sub-flows (rows of the path matrix).

Sources: Al-Fares, Loukissas and Vahdat, "A Scalable, Commodity Data Center
Network Architecture" (SIGCOMM 2008) §3; ISCA 2025 (arXiv 2505.09343) Table 3.

Left out: failed links, oversubscription, NVLink (one endpoint per NIC; flows from
an endpoint to itself stay off the network), and ``metrics.latency_us`` (Table 5
has no three-layer latency; ``LATENCY_US`` holds an extrapolation).

    >>> t = ft3_topology(64)
    >>> c = t.counts()
    >>> c["endpoints"], c["switches"], c["links"], t.n_links
    (65536, 5120, 131072, 393216)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minitransformer.scaleout.routing import ROUTE_BYTES_PER_ROW, Routed, check_request, ecmp_hash
from minitransformer.scaleout.topology import (IB_GBPS, KINDS, PRICE_LINK, PRICE_SWITCH, check_gbps, check_k,
                                               check_memory)

NIC, EDGE_AGG, AGG_CORE = (KINDS.index(k) for k in ("nic", "edge_agg", "agg_core"))


@dataclass(frozen=True)
class FT3Topology:
    """A k-ary three-layer fat-tree: link arrays (see the module docstring for the layout).

    Attributes:
        k: switch radix.
        src, dst: (6n,) int, the vertex at each end of each directed link.
        capacity: (6n,) float, GB/s per direction.
        kind: (6n,) int8, an index into ``KINDS``.
        name, gpus_per_node, ports_per_gpu, planes: what ``metrics`` reads of a ``Topology``
            (one endpoint per NIC port, one plane, no NVLink).
    """

    k: int
    src: np.ndarray
    dst: np.ndarray
    capacity: np.ndarray
    kind: np.ndarray
    name: str = "ft3"
    gpus_per_node: int = 1
    ports_per_gpu: int = 1
    planes: int = 1

    @property
    def h(self) -> int:
        return self.k // 2

    @property
    def n_gpus(self) -> int:
        return self.k ** 3 // 4

    n_ports = n_gpus  # one NIC port per endpoint

    @property
    def n_links(self) -> int:
        return len(self.src)

    @property
    def ea0(self) -> int:
        return 2 * self.n_gpus

    @property
    def ae0(self) -> int:
        return 3 * self.n_gpus

    @property
    def ac0(self) -> int:
        return 4 * self.n_gpus

    @property
    def ca0(self) -> int:
        return 5 * self.n_gpus

    # edge switches as the "leaves" of metrics.uplink_loads / spine_imbalance
    @property
    def n_leaves(self) -> int:
        return self.k * self.h

    n_spines = h
    up0, down0 = ea0, ae0

    @property
    def spine_alive(self) -> np.ndarray:
        return np.ones((1, self.h), bool)

    @property
    def leaf_plane(self) -> np.ndarray:
        return np.zeros(self.n_leaves, int)

    def counts(self) -> dict:
        """Endpoint, switch and switch-to-switch cable counts, as ``costs.ft3(k)["counts"]``."""
        switches = 2 * self.k * self.h + self.h ** 2  # edge, aggregation, core
        links = int((self.kind != NIC).sum()) // 2  # a cable is two directed links; NIC cables are not counted
        cost = switches * PRICE_SWITCH + links * PRICE_LINK
        return dict(endpoints=self.n_gpus, switches=switches, links=links, cost_usd=cost,
                    cost_per_endpoint_usd=cost / self.n_gpus)

    def __repr__(self) -> str:
        c = self.counts()
        return (f"FT3Topology(k={self.k}: {c['endpoints']} endpoints, {c['switches']} switches, "
                f"{c['links']} switch links)")


def ft3_topology(k: int = 64, nic_gbps: float = IB_GBPS, link_gbps: float = IB_GBPS) -> FT3Topology:
    """Build the k-ary three-layer fat-tree with every directed link and its capacity.

        >>> t = ft3_topology(4)
        >>> t.n_gpus, t.counts()["switches"], int(t.src[t.ea0]), int(t.dst[t.ea0])  # endpoint 16 = edge 0, 24 = agg 0
        (16, 20, 16, 24)
    """
    k = check_k(k)
    check_gbps(nic_gbps=nic_gbps, link_gbps=link_gbps)
    h = k // 2
    n = k * h * h
    x = np.arange(n)  # (n,) endpoints; also indexes the (edge, j) and (agg, m) blocks
    E0, A0, C0 = n, n + k * h, n + 2 * k * h  # first edge, aggregation and core vertex
    e, j = np.divmod(x, h)  # (n,) edge switch e -> its pod's aggregation j
    agg = (e // h) * h + j
    a, m = np.divmod(x, h)  # (n,) aggregation a -> core (a mod h)·h + m
    core = (a % h) * h + m
    src = np.concatenate([x, E0 + x // h, E0 + e, A0 + agg, A0 + a, C0 + core])  # (6n,)
    dst = np.concatenate([E0 + x // h, x, A0 + agg, E0 + e, C0 + core, A0 + a])  # (6n,)
    capacity = np.concatenate([np.full(2 * n, float(nic_gbps)), np.full(4 * n, float(link_gbps))])
    kind = np.repeat(np.array([NIC, EDGE_AGG, AGG_CORE], np.int8), 2 * n)
    return FT3Topology(k, src, dst, capacity, kind)


def _paths(t: FT3Topology, x, y, j, m) -> np.ndarray:
    """(R, 6) link ids of the paths x -> y through aggregation j and core (j, m); -1 where a path is shorter.

    Columns: NIC up, edge -> agg, agg -> core, core -> agg, agg -> edge, NIC down. Broadcasts over j, m.
    """
    h = t.h
    x, y, j, m = np.broadcast_arrays(x, y, j, m)
    es, ed = x // h, y // h  # edges
    ps, pd = es // h, ed // h  # pods
    up, down = es != ed, ps != pd  # leaves the edge; leaves the pod
    return np.stack([x, np.where(up, t.ea0 + es * h + j, -1), np.where(down, t.ac0 + ((ps * h + j) * h + m), -1),
                     np.where(down, t.ca0 + ((pd * h + j) * h + m), -1), np.where(up, t.ae0 + ed * h + j, -1),
                     t.n_gpus + y], axis=-1)


def _adaptive(t: FT3Topology, x, y, w) -> tuple[np.ndarray, np.ndarray]:
    """(j, m) for each flow: per source pod, largest first, the path whose busiest link is least loaded."""
    h = t.h
    es = x // h
    pod = es // h
    order = np.lexsort((-w, pod))  # by source pod, then largest first
    rnd = np.arange(len(order)) - np.searchsorted(pod[order], pod[order], side="left")  # rank within its pod
    by_round = np.argsort(rnd, kind="stable")
    bounds = np.searchsorted(rnd[by_round], np.arange(rnd.max() + 2 if len(rnd) else 1))
    load = np.zeros(t.n_links + 1)  # the last entry absorbs the unused columns (-1)
    choice = np.empty(len(x), np.int64)
    cols = np.arange(h * h)
    for r in range(len(bounds) - 1):
        f = order[by_round[bounds[r]:bounds[r + 1]]]  # one flow from each source pod that still has flows
        rot = (cols[None, :] + es[f, None] * (h + 1)) % (h * h)  # (n_r, h²) note: ties differ per source edge
        cand = _paths(t, x[f, None], y[f, None], rot // h, rot % h)[..., 1:5]  # (n_r, h², 4) switch links
        best = rot[np.arange(len(f)), np.argmin(load[cand].max(axis=2), axis=1)]  # (n_r,)
        choice[f] = best
        chosen = _paths(t, x[f], y[f], best // h, best % h)[:, 1:5]  # (n_r, 4)
        np.add.at(load, chosen, w[f, None])  # flows of several pods may share a link down
        load[-1] = 0.0
    return choice // h, choice % h


def route_ft3(topo: FT3Topology, traffic, policy: str = "ecmp", seed: int = 0, return_paths: bool = False) -> Routed:
    """Route ``traffic`` (``src``, ``dst``, ``bytes``, optional ``flow_id``) on ``ft3_topology(k)``.

    Args:
        policy: one of ``routing.POLICIES`` (``"ecmp"``, ``"static"``, ``"adaptive"``, ``"spray"``).
        seed: the ECMP hash seed.
        return_paths: keep the (R, 6) path matrix (``spray`` lists one row per shortest path).

        >>> from minitransformer.scaleout.traffic import Traffic
        >>> r = route_ft3(ft3_topology(4), Traffic([0, 0, 0], [1, 2, 15], [1.0, 1.0, 1.0]), "spray")
        >>> r.switch_hops.tolist(), float(r.load.sum())  # links crossed: 2 + 4 + 6
        ([1, 3, 5], 12.0)
    """
    if not isinstance(topo, FT3Topology):
        raise ValueError(f"route_ft3 needs an ft3_topology(k), got {type(topo).__name__}; "
                         "use routing.route for two-layer fabrics")
    x, y, w, _ = check_request(topo, traffic, policy, "pxn_src", seed)
    rows = len(x) * (topo.h ** 2 if policy == "spray" and return_paths else 1)  # spray lists every path
    check_memory(ROUTE_BYTES_PER_ROW * rows, f"routing {len(x):,} flows on {topo.name}",
                 "route fewer flows" + (", or pass return_paths=False" if return_paths else ""))
    fid = getattr(traffic, "flow_id", None)
    flow_id = np.zeros(len(x), np.int64) if fid is None else np.asarray(fid, np.int64)
    if flow_id.shape != x.shape:
        raise ValueError(f"traffic.flow_id has shape {flow_id.shape}; it needs one id per flow, {x.shape}")
    h, n, F = topo.h, topo.n_gpus, len(x)
    net = x != y  # (F,) flows to oneself never enter the network
    es, ed = x // h, y // h
    up, down = net & (es != ed), (es // h) != (ed // h)  # (F,) climbs to aggregation; to core
    load = np.zeros(topo.n_links)
    load[:n] = np.bincount(x[net], w[net], n)  # NIC up and down
    load[n:2 * n] = np.bincount(y[net], w[net], n)
    if policy == "spray":  # loads by broadcasting: each edge (pod) spreads its bytes over its h (h²) uplinks
        K = topo.k * h
        load[topo.ea0:topo.ae0] = np.repeat(np.bincount(es[up], w[up], K) / h, h)
        load[topo.ae0:topo.ac0] = np.repeat(np.bincount(ed[up], w[up], K) / h, h)
        load[topo.ac0:topo.ca0] = np.repeat(np.bincount(es[down] // h, w[down], topo.k) / h ** 2, h * h)
        load[topo.ca0:] = np.repeat(np.bincount(ed[down] // h, w[down], topo.k) / h ** 2, h * h)
    else:
        if policy == "ecmp":
            key = (ecmp_hash(seed, x, y, flow_id) % np.uint64(h * h)).astype(np.int64)  # one of h² paths
            j, m = np.where(down, key // h, key % h), key % h  # inside a pod only j counts: one of h
        elif policy == "static":  # d-mod-k: the destination's position on its edge, then its edge in the pod
            j, m = y % h, ed % h
        else:
            j, m = np.zeros(F, np.int64), np.zeros(F, np.int64)
            if up.any():
                j[up], m[up] = _adaptive(topo, x[up], y[up], w[up])
        paths = _paths(topo, x, y, j, m)[:, 1:5][up]  # (R, 4) switch-to-switch links
        load += np.bincount(paths[paths >= 0], np.broadcast_to(w[up, None], paths.shape)[paths >= 0], topo.n_links)
    switch_hops = np.where(net, 1 + 2 * up + 2 * down, 0)  # (F,) 0, 1, 3 or 5
    out = Routed(topo, traffic, policy, "none", load, switch_hops, np.zeros(F, int), np.zeros(F, bool))
    if return_paths:
        rows = np.flatnonzero(net)
        if policy == "spray":  # one row per shortest path, bytes split evenly
            n_paths = np.where(down, h * h, np.where(up, h, 1))[rows]
            rows = np.repeat(rows, n_paths)
            idx = np.arange(len(rows)) - np.repeat(np.cumsum(n_paths) - n_paths, n_paths)  # path index of the flow
            j, m = np.where(down[rows], idx // h, idx), np.where(down[rows], idx % h, 0)
            out.path_bytes = w[rows] / n_paths.repeat(n_paths)
        else:
            j, m = j[rows], m[rows]
            out.path_bytes = w[rows]
        out.paths, out.path_flow = _paths(topo, x[rows], y[rows], j, m), rows
    return out


__all__ = ["FT3Topology", "ft3_topology", "route_ft3"]
