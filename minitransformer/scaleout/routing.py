"""Routing: which links each flow crosses, and how many bytes every link carries.

A flow is (source GPU, destination GPU, bytes). On a two-layer fabric a path is
arithmetic: up from the source's NIC port to its leaf, and, if the destination
hangs from another leaf, up to one spine and down again. The only choice is the
spine, and that is what the routing policies differ in (S = k/2 spines per plane):

- ``ecmp``: a hash of (source port, destination port, flow id) picks the spine, as
  switches do with equal-cost multi-path. Deterministic for a given ``seed``; equal
  flows can still collide on one uplink, because the hash knows nothing of load.
- ``static``: destination-mod-k, spine = the destination's position on its leaf
  (the "manual routing table"): perfect for fixed collectives, blind to traffic.
- ``adaptive``: each leaf places its flows, largest first, on its least-loaded
  uplinks (flow-level adaptive routing; a leaf sees only its own uplinks).
- ``spray``: every flow is split evenly over all spines (ideal packet spraying).

On a multi-plane fat-tree a GPU's NIC reaches only its own plane, so a flow to a
GPU on another plane needs one hop over NVLink inside a node (``cross_plane``):

- ``pxn_src``: NVLink to the GPU of the source node that sits on the destination's
  plane, then the network (NCCL's PXN);
- ``fwd_dst``: the network on the source's own plane to the destination node's GPU
  with the same local index, then NVLink (DeepEP's same-index forwarding);
- ``multiport``: the ideal multi-port NIC (``ideal_mpft``): the flow is sprayed over
  all P planes and never needs NVLink.

Flows inside one node use NVLink only. Loads are accumulated with ``np.bincount``
(the same as ``np.add.at``) over a matrix of paths, one row per sub-flow, so there is
no Python loop over flows (``adaptive`` loops over rounds, each placing one flow
of every leaf at once).

Sizes: F flows, R sub-flows (rows of the path matrix), E directed links.

Sources: ISCA 2025 (arXiv 2505.09343) §5.1, §5.2.2 (ECMP, adaptive and static
routing, Fig. 8); Steele et al., SplitMix64 (OOPSLA 2014) for the hash; NCCL's PXN.

Left out: packets, queues, congestion control and time-varying rates. Loads are
bytes, and a traffic pattern's completion time is the fluid bound max(load/capacity).

    >>> from minitransformer.scaleout.topology import ft2
    >>> from minitransformer.scaleout.traffic import Traffic
    >>> r = route(ft2(4), Traffic([0, 0], [1, 7], [1.0, 2.0]))
    >>> r.switch_hops.tolist(), float(r.load.sum())
    ([1, 3], 10.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minitransformer.core.values import is_int
from minitransformer.scaleout.topology import Topology, check_memory

POLICIES = ("ecmp", "static", "adaptive", "spray")
CROSS_PLANE = ("pxn_src", "fwd_dst", "multiport")
ROUTE_BYTES_PER_ROW = 300  # peak memory per sub-flow while routing (tracemalloc: 170-260 B; rounded up)
_NCOL = 8  # path columns: NVLink out, in (forward before), NIC up, leaf->spine, spine->leaf, NIC down, NVLink out, in (after)

def splitmix64(x) -> np.ndarray:
    """The SplitMix64 finaliser on uint64 arrays: a cheap, well-mixed, reproducible hash.

    note: numpy uint64 arithmetic wraps around modulo 2**64, which is what the hash wants.

        >>> int(splitmix64(np.uint64(0)))
        16294208416658607535
    """
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def ecmp_hash(seed: int, *keys) -> np.ndarray:
    """Hash integer arrays (e.g. source port, destination port, flow id) into uint64, mixed with ``seed``."""
    h = splitmix64(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF))  # int(): a numpy seed would overflow the mask
    for key in keys:
        h = splitmix64(h ^ np.asarray(key).astype(np.uint64))
    return h


@dataclass
class Routed:
    """A traffic pattern routed on a topology.

    Attributes:
        load: (E,) bytes carried by each directed link.
        switch_hops: (F,) switches crossed by each flow's network leg (0 inside a node).
        nvlink_hops: (F,) NVLink traversals (1 inside a node, 1 per forward hop).
        cross_plane: (F,) True for flows between nodes whose GPUs sit on different planes.
        paths, path_flow, path_bytes: with ``return_paths=True``, the (R, 8) link ids of
            each sub-flow (-1 where unused; columns in path order), its flow, and its bytes.
    """

    topo: Topology
    traffic: object
    policy: str
    cross_plane_policy: str
    load: np.ndarray
    switch_hops: np.ndarray
    nvlink_hops: np.ndarray
    cross_plane: np.ndarray
    paths: np.ndarray | None = None
    path_flow: np.ndarray | None = None
    path_bytes: np.ndarray | None = None


def check_request(topo: Topology, traffic, policy, cross_plane, seed=0):
    if not is_int(seed):
        raise ValueError(f"seed={seed!r} must be an int (it seeds the ECMP hash)")
    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r} is not valid; choose one of {', '.join(map(repr, POLICIES))}")
    if cross_plane is None:
        cross_plane = "multiport" if topo.ports_per_gpu > 1 else "pxn_src"
    if cross_plane not in CROSS_PLANE:
        raise ValueError(f"cross_plane={cross_plane!r} is not valid; choose one of {', '.join(map(repr, CROSS_PLANE))}")
    if (cross_plane == "multiport") != (topo.ports_per_gpu > 1):
        raise ValueError("cross_plane='multiport' needs NICs with one port per plane: build the topology with "
                         "ideal_mpft, and use 'pxn_src' or 'fwd_dst' on the others")
    if not all(hasattr(traffic, a) for a in ("src", "dst", "bytes")):
        raise ValueError(f"traffic must be a Traffic (src, dst and bytes arrays), got {type(traffic).__name__}; "
                         "route the phases of a list one at a time: [route(topo, t) for t in phases]")
    src, dst = np.asarray(traffic.src, np.int64), np.asarray(traffic.dst, np.int64)
    w = np.asarray(traffic.bytes, np.float64)
    if not (src.shape == dst.shape == w.shape) or src.ndim != 1:
        raise ValueError(f"traffic src, dst and bytes must be 1-D and equally long, got {src.shape}, {dst.shape}, {w.shape}")
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= topo.n_gpus):
        raise ValueError(f"traffic names GPUs outside 0..{topo.n_gpus - 1}: it was made for a larger topology")
    if len(w) and (not np.isfinite(w).all() or w.min() < 0):
        raise ValueError("traffic bytes must be finite and non-negative")
    return src, dst, w, cross_plane


def _expand(topo: Topology, src, dst, w, cross_plane):
    """Split flows into sub-flows: (flow, pre NVLink a->a', network u->v, post NVLink b'->b, bytes).

    Ports u, v are -1 for flows inside a node; the NVLink ends are -1 where no forward hop is needed.
    """
    G, P = topo.gpus_per_node, topo.ports_per_gpu
    F = len(src)
    flow = np.arange(F)
    na, nb = src // G, dst // G
    inter = na != nb  # (F,) flows that leave their node
    if P > 1:  # ideal multi-port NIC: one sub-flow per plane, no NVLink, bytes/P each
        flow = np.concatenate([np.repeat(flow[inter], P), flow[~inter]])
        p = np.tile(np.arange(P), int(inter.sum()))
        a, b = src[flow], dst[flow]
        n_int = len(p)
        u = np.concatenate([a[:n_int] * P + p, np.full(len(flow) - n_int, -1)])
        v = np.concatenate([b[:n_int] * P + p, np.full(len(flow) - n_int, -1)])
        sub_w = np.where(u >= 0, w[flow] / P, w[flow])
        none = np.full(len(flow), -1)
        pre_a, pre_b = np.where(u < 0, a, -1), np.where(u < 0, b, -1)  # intra-node flows: NVLink only
        return flow, pre_a, pre_b, u, v, none, none, sub_w
    plane_a, plane_b = topo.port_plane[src], topo.port_plane[dst]
    change = inter & (plane_a != plane_b)  # needs a forward hop (only on multi-plane fabrics)
    u, v = np.where(inter, src, -1), np.where(inter, dst, -1)
    pre_a, pre_b = np.where(inter, -1, src), np.where(inter, -1, dst)  # intra-node flows: NVLink only
    post_a, post_b = np.full(F, -1), np.full(F, -1)
    if cross_plane == "pxn_src":  # hop to the source node's GPU on the destination's plane first
        fwd = na * G + plane_b  # note: on an MPFT, local index = plane
        pre_a, pre_b = np.where(change, src, pre_a), np.where(change, fwd, pre_b)
        u = np.where(change, fwd, u)
    else:  # fwd_dst: cross on the source's plane to the same-index GPU, then NVLink
        fwd = nb * G + plane_a
        v = np.where(change, fwd, v)
        post_a, post_b = np.where(change, fwd, -1), np.where(change, dst, -1)
    return flow, pre_a, pre_b, u, v, post_a, post_b, w.copy()


def _spines(topo: Topology, policy, u, v, lu, lv, w, seed, flow_id):
    """The spine (0..S-1) chosen for each cross-leaf sub-flow (not used by ``spray``)."""
    S = topo.n_spines
    plane = topo.leaf_plane[lu]
    n_alive_p = topo.spine_alive.sum(axis=1)  # (P,) live spines per plane
    # alive_list[p, j] = the j-th live spine of plane p (failed spines are never chosen)
    alive_list = np.argsort(~topo.spine_alive, axis=1, kind="stable")  # (P, S)
    n_alive = n_alive_p[plane]  # (R,)
    if policy == "ecmp":
        key = (ecmp_hash(seed, u, v, flow_id) % n_alive.astype(np.uint64)).astype(np.int64)
        return alive_list[plane, key]
    if policy == "static":  # d-mod-k: the destination's position on its leaf picks the spine
        return alive_list[plane, topo.port_pos[v] % n_alive]
    # adaptive: each leaf places its flows one at a time, largest first, on the spine whose path
    # (its uplink, and the spine's downlink to the target leaf) is least loaded so far. Leaves act
    # in parallel: round r places the r-th flow of every leaf (vectorised over leaves).
    order = np.lexsort((-w, lu))  # by leaf, then largest first
    leaf_sorted = lu[order]
    rnd = np.arange(len(order)) - np.searchsorted(leaf_sorted, leaf_sorted, side="left")  # rank within its leaf
    dead = np.where(topo.spine_alive[topo.leaf_plane], 0.0, np.inf)  # (L, S) failed spines are never chosen
    up, down = dead.copy(), dead.copy()  # (L, S) bytes on leaf -> spine, and on spine -> leaf
    spine = np.empty(len(order), np.int64)
    by_round = np.argsort(rnd, kind="stable")
    bounds = np.searchsorted(rnd[by_round], np.arange(rnd.max() + 2 if len(rnd) else 1))
    cols = np.arange(S)
    for r in range(len(bounds) - 1):
        idx = by_round[bounds[r]:bounds[r + 1]]  # one flow from each leaf that still has flows
        f = order[idx]
        a, b = lu[f], lv[f]
        rot = (cols[None, :] + a[:, None]) % S  # (n, S) note: ties go to a different spine per source leaf
        cost = np.maximum(up[a[:, None], rot], down[b[:, None], rot])  # (n, S) the busier link of each path
        s = rot[np.arange(len(idx)), np.argmin(cost, axis=1)]
        spine[idx] = s
        up[a, s] += w[f]  # one flow per leaf: the (leaf, spine) pairs are distinct
        np.add.at(down, (b, s), w[f])  # several leaves may target one leaf
    out = np.empty_like(spine)
    out[order] = spine
    return out


def route(topo: Topology, traffic, policy: str = "ecmp", cross_plane: str | None = None, seed: int = 0,
          return_paths: bool = False) -> Routed:
    """Route ``traffic`` (``src``, ``dst``, ``bytes`` and optional ``flow_id`` arrays) on ``topo``.

    Args:
        policy: spine choice, one of ``POLICIES``.
        cross_plane: forward policy for flows between planes (default: ``"multiport"`` on
            an ``ideal_mpft``, ``"pxn_src"`` elsewhere).
        seed: the ECMP hash seed.
        return_paths: keep the (R, 8) path matrix (``spray`` then lists one row per spine).

    ``topo`` is a two-layer fabric (``ft2``, ``mpft``, ``mrft``, ``ideal_mpft``); the
    three-layer ``ft3_topology`` routes with ``fattree3.route_ft3``.
    """
    if not isinstance(topo, Topology):
        raise ValueError(f"route needs a two-layer Topology (ft2, mpft, mrft or ideal_mpft), got "
                         f"{type(topo).__name__}; route an ft3_topology(k) with fattree3.route_ft3")
    src, dst, w, cross_plane = check_request(topo, traffic, policy, cross_plane, seed)
    rows = len(src) * topo.ports_per_gpu * (topo.n_spines if policy == "spray" and return_paths else 1)
    check_memory(ROUTE_BYTES_PER_ROW * rows, f"routing {len(src):,} flows on {topo.name}",
                 "route fewer flows" + (", or pass return_paths=False" if return_paths else ""))
    fid = getattr(traffic, "flow_id", None)
    flow_id = np.zeros(len(src), np.int64) if fid is None else np.asarray(fid, np.int64)
    if flow_id.shape != src.shape:
        raise ValueError(f"traffic.flow_id has shape {flow_id.shape}; it needs one id per flow, {src.shape}")
    flow, pre_a, pre_b, u, v, post_a, post_b, sw = _expand(topo, src, dst, w, cross_plane)
    R, E, S, nv0, ng = len(flow), topo.n_links, topo.n_spines, topo.nvl0, topo.n_gpus
    net = u >= 0  # (R,) sub-flows with a network leg
    lu, lv = np.where(net, topo.port_leaf[np.maximum(u, 0)], -1), np.where(net, topo.port_leaf[np.maximum(v, 0)], -1)
    cross = net & (lu != lv)  # (R,) sub-flows that climb to a spine
    paths = np.stack([np.where(pre_a >= 0, nv0 + pre_a, -1),  # GPU -> NVSwitch (forward before)
                      np.where(pre_b >= 0, nv0 + ng + pre_b, -1),  # NVSwitch -> GPU
                      np.where(net, u, -1),  # NIC port up to its leaf
                      np.full(R, -1), np.full(R, -1),  # leaf -> spine, spine -> leaf: filled below
                      np.where(net, topo.n_ports + v, -1),  # leaf down to the NIC port
                      np.where(post_a >= 0, nv0 + post_a, -1),  # forward after
                      np.where(post_b >= 0, nv0 + ng + post_b, -1)], axis=1)  # (R, 8)
    load = np.zeros(E)
    if policy == "spray":
        # note: loads by broadcasting, without one row per spine: each leaf's cross-leaf bytes are
        # spread evenly over its plane's live spines, and likewise into the target leaf.
        alive = topo.spine_alive[topo.leaf_plane].astype(float)  # (L, S)
        share = alive / alive.sum(axis=1, keepdims=True)
        load[topo.up0:topo.down0] = (np.bincount(lu[cross], sw[cross], topo.n_leaves)[:, None] * share).ravel()
        load[topo.down0:topo.nvl0] = (np.bincount(lv[cross], sw[cross], topo.n_leaves)[:, None] * share).ravel()
    else:
        plane_key = topo.port_plane[u[cross]] if topo.ports_per_gpu > 1 else 0  # multiport: hash each plane apart
        s = _spines(topo, policy, u[cross], v[cross], lu[cross], lv[cross], sw[cross], seed,
                    flow_id[flow[cross]] * 64 + plane_key)
        paths[cross, 3] = topo.up0 + lu[cross] * S + s
        paths[cross, 4] = topo.down0 + lv[cross] * S + s
    used = paths >= 0  # (R, 8)
    load += np.bincount(paths[used], np.broadcast_to(sw[:, None], paths.shape)[used], minlength=E)

    # per-flow hop counts (all sub-flows of a flow have the same shape) and plane changes
    F = len(src)
    switch_hops, nvlink_hops = np.zeros(F, int), np.zeros(F, int)
    switch_hops[flow] = np.where(net, np.where(cross, 3, 1), 0)
    nvlink_hops[flow] = (pre_a >= 0).astype(int) + (post_a >= 0)
    planes = topo.gpu_plane()
    G = topo.gpus_per_node
    crossp = (src // G != dst // G) & (planes[src] != planes[dst])  # (F,)
    out = Routed(topo, traffic, policy, cross_plane, load, switch_hops, nvlink_hops, crossp)
    if return_paths:
        if policy == "spray":  # one row per (cross-leaf sub-flow, live spine), bytes split evenly
            rows = np.flatnonzero(cross)
            rep, s = np.repeat(rows, S), np.tile(np.arange(S), len(rows))
            keep = topo.spine_alive[topo.leaf_plane[lu[rep]], s]
            rep, s = rep[keep], s[keep]
            extra = paths[rep].copy()
            extra[:, 3], extra[:, 4] = topo.up0 + lu[rep] * S + s, topo.down0 + lv[rep] * S + s
            n_alive = topo.spine_alive[topo.leaf_plane[lu[rep]]].sum(axis=1)
            out.paths = np.concatenate([paths[~cross], extra])
            out.path_flow = np.concatenate([flow[~cross], flow[rep]])
            out.path_bytes = np.concatenate([sw[~cross], sw[rep] / n_alive])
        else:
            out.paths, out.path_flow, out.path_bytes = paths, flow, sw
    return out
