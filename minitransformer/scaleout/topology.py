"""Topologies: fat-trees of k-port switches, built as flat numpy arrays of directed links.

A *two-layer fat-tree* (FT2, leaf/spine) of k-port switches has k leaves, each with
k/2 ports down to endpoints and k/2 up, one to each of k/2 spines: k²/2 endpoints,
full bisection. DeepSeek-V3's *multi-plane fat-tree* (MPFT) is P independent FT2
planes: a node holds G = P GPUs, and GPU i of every node has its NIC on plane i, so
P·k²/2 GPUs (8 planes of 64-port switches: 16,384) stay two switch layers apart.
A *multi-rail fat-tree* (MRFT) puts rail i's NICs on their own leaves but lets all
rails share one spine layer; the *ideal multi-port* MPFT gives every GPU one NIC
port on each plane (ISCA Fig. 4). The three-layer fat-tree (FT3) is built link by link in
``fattree3``; its counts, and the count-only Slim Fly and Dragonfly formulas of the
paper's cost table, live in ``costs``.

Data model (two-layer fabrics). Endpoints are GPUs, ``gpu = node·G + local``. A NIC
port ``q`` belongs to GPU ``port_gpu[q]`` and hangs from leaf ``port_leaf[q]`` at
position ``port_pos[q]`` (0..k/2-1); leaves are numbered across planes, and spine
``s`` of plane ``p`` is vertex ``spine0 + p·S + s``. Directed links are laid out in
blocks so a path is arithmetic, never a graph search (S = k/2 spines per plane)::

    [0, Q)              port q -> its leaf            (kind "nic")
    [Q, 2Q)             leaf -> port q                (kind "nic")
    up0 + l·S + s       leaf l -> spine s of its plane (kind "leaf_spine")
    down0 + l·S + s     spine s -> leaf l             (kind "leaf_spine")
    nvl0 + g            GPU g -> its node's NVSwitch  (kind "nvlink")
    nvl0 + n_gpus + g   NVSwitch -> GPU g             (kind "nvlink")

Sizes: Q ports, L leaves, S spines per plane, N nodes, G GPUs per node.

Sources: Insights into DeepSeek-V3 (ISCA 2025, arXiv 2505.09343) §5.1, Tables 3
and 5; Al-Fares et al., "A Scalable, Commodity Data Center Network Architecture"
(SIGCOMM 2008) for k-ary fat-trees; Besta & Hoefler, "Slim Fly" (SC 2014); Kim et
al., "Technology-Driven, Highly-Scalable Dragonfly Topology" (ISCA 2008).

Left out: cables and their lengths (costs are a flat price per switch and per
link, fitted to the paper's FT2 and FT3 rows), oversubscribed trees, switch
buffers and latency inside a switch, PCIe between GPU and NIC.

    >>> t = mpft(64)
    >>> t.n_gpus, t.counts()["switches"], t.counts()["links"]
    (16384, 768, 16384)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from minitransformer.core.values import is_int, is_number

IB_GBPS = 50.0  # 400 Gb/s InfiniBand NDR, per direction (40 GB/s is what small messages achieve)
NVLINK_GBPS = 160.0  # H800 NVLink, achievable per GPU per direction (200 nominal)
KINDS = ("nic", "leaf_spine", "nvlink", "edge_agg", "agg_core")  # link kind codes index this tuple

# A flat price fitted to the paper's FT2 row (96 switches, 2,048 links: 9 M$) and FT3 row
# (5,120 switches, 131,072 links: 491 M$). note: the paper follows Slim Fly's cost model with
# length-dependent cables, so only FT2/FT3 (and MPFT = 8 x FT2) come out exactly.
PRICE_SWITCH = 85e6 / 1024  # $ per switch (~83.0 k$)
PRICE_LINK = (9e6 - 96 * PRICE_SWITCH) / 2048  # $ per switch-to-switch link (~503.5 $)


MEMORY_LIMIT_GIB = 4.0  # work whose arrays would need more is refused up front (raise it on a bigger machine)


def check_k(k) -> int:
    if not is_int(k) or k < 2 or k % 2:
        raise ValueError(f"k={k!r} must be an even int >= 2: a fat-tree switch gives half its ports down, half up")
    return int(k)


def check_positive(name: str, v) -> int:
    if not is_int(v) or v < 1:
        raise ValueError(f"{name}={v!r} must be a positive int")
    return int(v)


def check_number(name: str, v, hint: str = "", zero: bool = False) -> float:
    """``v`` as a float if it is a finite number > 0 (>= 0 with ``zero``); else a ValueError naming it."""
    if not (is_number(v) and np.isfinite(v) and (v >= 0 if zero else v > 0)):
        must = "a finite number >= 0" if zero else "a positive, finite number"
        raise ValueError(f"{name}={v!r} must be {must}{hint}")
    return float(v)


def check_gbps(**rates) -> None:
    for name, v in rates.items():
        check_number(name, v, " of GB/s per direction (400 Gb/s InfiniBand is 50)")


def memory_limit_bytes() -> float:
    return MEMORY_LIMIT_GIB * 2 ** 30


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse, before allocating, work whose arrays would need more than ``MEMORY_LIMIT_GIB``."""
    if nbytes > memory_limit_bytes():
        raise ValueError(f"{what} would need about {nbytes / 2 ** 30:,.1f} GiB of memory, more than the "
                         f"{MEMORY_LIMIT_GIB:g} GiB limit (topology.MEMORY_LIMIT_GIB); {fix}")


@dataclass(frozen=True)
class Topology:
    """A two-layer fabric (one or more leaf/spine planes) plus the NVLink inside each node.

    Attributes:
        name: ``"ft2"``, ``"mpft"``, ``"mrft"`` or ``"ideal_mpft"``.
        k: switch radix (ports per switch).
        planes: number of independent leaf/spine planes (P).
        nodes, gpus_per_node: N and G; ``n_gpus = N·G``.
        port_gpu, port_leaf, port_pos, port_plane: (Q,) int arrays, one entry per NIC port.
        leaf_plane: (L,) int, the plane of each leaf.
        src, dst: (E,) int, the vertex at each end of each directed link.
        capacity: (E,) float, GB/s per direction (0 for a failed link).
        kind: (E,) int8, an index into ``KINDS``.
        plane: (E,) int, the plane of each link (-1 for NVLink, which belongs to the node).
        spine_alive: (P, S) bool, False for failed spines.
    """

    name: str
    k: int
    planes: int
    nodes: int
    gpus_per_node: int
    port_gpu: np.ndarray
    port_leaf: np.ndarray
    port_pos: np.ndarray
    port_plane: np.ndarray
    leaf_plane: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    capacity: np.ndarray
    kind: np.ndarray
    plane: np.ndarray
    spine_alive: np.ndarray

    # ------------------------------------------------------------------ sizes and link blocks
    @property
    def n_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def n_ports(self) -> int:
        return len(self.port_gpu)

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_plane)

    @property
    def n_spines(self) -> int:
        """S, spines per plane (k/2: every leaf has one uplink to each)."""
        return self.k // 2

    @property
    def n_links(self) -> int:
        return len(self.src)

    @property
    def up0(self) -> int:
        return 2 * self.n_ports

    @property
    def down0(self) -> int:
        return self.up0 + self.n_leaves * self.n_spines

    @property
    def nvl0(self) -> int:
        return self.down0 + self.n_leaves * self.n_spines

    @property
    def ports_per_gpu(self) -> int:
        return self.n_ports // self.n_gpus

    def gpu_plane(self) -> np.ndarray:
        """(n_gpus,) the plane of each GPU's (first) NIC port."""
        return self.port_plane[:: self.ports_per_gpu]

    def counts(self) -> dict:
        """Endpoint, switch and switch-to-switch link counts (the rows of ISCA Table 3)."""
        switches = self.n_leaves + self.planes * self.n_spines
        links = self.n_leaves * self.n_spines  # one cable per leaf uplink; NIC cables are not counted
        return dict(endpoints=self.n_gpus, switches=switches, links=links,
                    cost_usd=switches * PRICE_SWITCH + links * PRICE_LINK,
                    cost_per_endpoint_usd=(switches * PRICE_SWITCH + links * PRICE_LINK) / self.n_gpus)

    def fail_spine(self, plane: int, spine: int) -> "Topology":
        """A copy with spine ``spine`` of ``plane`` removed (its links get capacity 0).

        Routing then avoids it; every other plane is untouched, which is the paper's
        fault-isolation argument (ISCA §5.1.1).
        """
        if not (is_int(plane) and is_int(spine) and 0 <= plane < self.planes and 0 <= spine < self.n_spines):
            raise ValueError(f"no spine {spine!r} in plane {plane!r}: planes are the ints 0..{self.planes - 1}, "
                             f"spines 0..{self.n_spines - 1}")
        alive = self.spine_alive.copy()
        alive[plane, spine] = False
        if not alive[plane].any():
            raise ValueError(f"failing spine {spine} would leave plane {plane} without any spine")
        leaves = np.flatnonzero(self.leaf_plane == plane)  # (L_p,)
        dead = np.concatenate([self.up0 + leaves * self.n_spines + spine, self.down0 + leaves * self.n_spines + spine])
        capacity = self.capacity.copy()
        capacity[dead] = 0.0
        return replace(self, capacity=capacity, spine_alive=alive, name=f"{self.name} (spine {spine} of plane {plane} failed)")

    def __repr__(self) -> str:
        c = self.counts()
        return (f"Topology({self.name}: k={self.k}, {self.planes} plane(s), {self.nodes} nodes x {self.gpus_per_node} GPUs "
                f"= {self.n_gpus} GPUs, {c['switches']} switches, {c['links']} switch links)")


def _build(name, k, planes, nodes, G, port_gpu, port_leaf, port_pos, port_plane, leaf_plane,
           nic_gbps, nvlink_gbps) -> Topology:
    """Lay out the link arrays for the ports, leaves and spines given (see the module docstring)."""
    Q, L, S, n_gpus = len(port_gpu), len(leaf_plane), k // 2, nodes * G
    leaf0, spine0 = n_gpus, n_gpus + L  # vertex numbering: GPUs, leaves, spines, NVSwitches
    nvs0 = spine0 + planes * S
    ll, ss = np.divmod(np.arange(L * S), S)  # (L·S,) leaf and spine of each uplink
    spine_v = spine0 + leaf_plane[ll] * S + ss  # (L·S,) global spine vertex
    nvl = G > 1
    gpus = np.arange(n_gpus)
    src = np.concatenate([port_gpu, leaf0 + port_leaf, leaf0 + ll, spine_v]
                         + ([gpus, nvs0 + gpus // G] if nvl else []))
    dst = np.concatenate([leaf0 + port_leaf, port_gpu, spine_v, leaf0 + ll]
                         + ([nvs0 + gpus // G, gpus] if nvl else []))
    n_nvl = 2 * n_gpus if nvl else 0
    capacity = np.concatenate([np.full(2 * Q, nic_gbps), np.full(2 * L * S, IB_GBPS), np.full(n_nvl, float(nvlink_gbps))])
    kind = np.concatenate([np.zeros(2 * Q, np.int8), np.ones(2 * L * S, np.int8), np.full(n_nvl, 2, np.int8)])
    plane = np.concatenate([port_plane, port_plane, leaf_plane[ll], leaf_plane[ll], np.full(n_nvl, -1)])
    return Topology(name, k, planes, nodes, G, port_gpu, port_leaf, port_pos, port_plane, leaf_plane,
                    src, dst, capacity, kind, plane, np.ones((planes, S), bool))


def _nodes(nodes, per_plane_max, what) -> int:
    if nodes is None:
        return per_plane_max
    if not is_int(nodes) or nodes < 1:
        raise ValueError(f"nodes={nodes!r} must be a positive int (or None for the largest two-layer size)")
    if nodes > per_plane_max:
        raise ValueError(f"{nodes} nodes need more ports than {what} has (at most {per_plane_max} nodes); "
                         "use fewer nodes or larger switches (a larger k)")
    return int(nodes)


def mpft(k: int = 64, planes: int = 8, gpus_per_node: int | None = None, nodes: int | None = None,
         nic_gbps: float = IB_GBPS, nvlink_gbps: float = NVLINK_GBPS) -> Topology:
    """Multi-plane fat-tree: ``planes`` FT2 planes; GPU i of each node is on plane i.

    Node n hangs from leaf ``n // (k/2)`` of every plane, so k/2 nodes share a leaf
    group. ``nodes=None`` builds the largest two-layer size, k²/2 nodes.

        >>> t = mpft(8, planes=2, nodes=6)
        >>> t.n_gpus, t.n_leaves, t.gpu_plane().tolist()[:4]
        (12, 4, [0, 1, 0, 1])
    """
    k, planes = check_k(k), check_positive("planes", planes)
    check_gbps(nic_gbps=nic_gbps, nvlink_gbps=nvlink_gbps)
    G = planes if gpus_per_node is None else gpus_per_node
    if G != planes:
        raise ValueError(f"an MPFT pairs each GPU with a NIC on its own plane, so gpus_per_node={G} must equal "
                         f"planes={planes}")
    N = _nodes(nodes, k * k // 2, f"a two-layer fat-tree of {k}-port switches")
    half = k // 2
    Lp = -(-N // half)  # leaves per plane
    gpu = np.arange(N * G)
    node, local = np.divmod(gpu, G)
    return _build("mpft", k, planes, N, G, port_gpu=gpu, port_leaf=local * Lp + node // half, port_pos=node % half,
                  port_plane=local, leaf_plane=np.repeat(np.arange(planes), Lp), nic_gbps=nic_gbps,
                  nvlink_gbps=nvlink_gbps)


def ideal_mpft(k: int = 64, planes: int = 8, nodes: int | None = None, nic_gbps: float = IB_GBPS,
               nvlink_gbps: float = NVLINK_GBPS) -> Topology:
    """The envisioned MPFT (ISCA Fig. 4): each GPU's NIC has one port on every plane.

    The switches and switch links are those of ``mpft``; each GPU's NIC bandwidth is
    split over its P ports (``nic_gbps / P`` each, like a 400G switch port broken out
    into P lanes), so a node still brings 50 GB/s per plane.

        >>> t = ideal_mpft(8, planes=2, nodes=4)
        >>> t.n_ports, t.ports_per_gpu, float(t.capacity[0])
        (16, 2, 25.0)
    """
    k, planes = check_k(k), check_positive("planes", planes)
    check_gbps(nic_gbps=nic_gbps, nvlink_gbps=nvlink_gbps)
    N = _nodes(nodes, k * k // 2, f"a two-layer fat-tree of {k}-port switches")
    half, G = k // 2, planes
    Lp = -(-N // half)
    q = np.arange(N * G * planes)  # port q = gpu·P + p
    gpu, p = np.divmod(q, planes)
    node = gpu // G
    t = _build("ideal_mpft", k, planes, N, G, port_gpu=gpu, port_leaf=p * Lp + node // half, port_pos=node % half,
               port_plane=p, leaf_plane=np.repeat(np.arange(planes), Lp), nic_gbps=nic_gbps / planes,
               nvlink_gbps=nvlink_gbps)
    return t


def mrft(k: int = 64, rails: int = 8, nodes: int | None = None, nic_gbps: float = IB_GBPS,
         nvlink_gbps: float = NVLINK_GBPS) -> Topology:
    """Multi-rail fat-tree: rail i's NICs have their own leaves, but all rails share one spine layer.

    Cross-rail traffic can therefore go leaf -> spine -> leaf with no NVLink hop.
    A spine's k ports reach k leaves, so each rail gets k // rails leaves of k/2 nodes;
    ``nodes=None`` builds that largest size (k²/2 GPUs when rails divides k: at k=64,
    256 nodes of 8).

        >>> t = mrft(8, rails=2)
        >>> t.n_gpus, t.counts()["switches"]
        (32, 12)
        >>> mrft(64, rails=6).nodes  # 10 leaves of 32 nodes per rail: 4 of the spines' 64 ports stay free
        320
    """
    k, rails = check_k(k), check_positive("rails", rails)
    check_gbps(nic_gbps=nic_gbps, nvlink_gbps=nvlink_gbps)
    if rails > k:
        raise ValueError(f"rails={rails} need a leaf each, more than the {k} leaves a spine of {k} ports can reach; "
                         f"use rails <= {k} or larger switches (a larger k)")
    half = k // 2
    N = _nodes(nodes, k // rails * half, f"a two-layer fat-tree of {k}-port switches shared by {rails} rails")
    Lr = -(-N // half)  # leaves per rail (rails·Lr <= k: every leaf reaches every spine)
    gpu = np.arange(N * rails)
    node, local = np.divmod(gpu, rails)
    return _build("mrft", k, 1, N, rails, port_gpu=gpu, port_leaf=local * Lr + node // half, port_pos=node % half,
                  port_plane=np.zeros_like(gpu), leaf_plane=np.zeros(rails * Lr, int), nic_gbps=nic_gbps,
                  nvlink_gbps=nvlink_gbps)


def ft2(k: int = 64, endpoints: int | None = None, nic_gbps: float = IB_GBPS) -> Topology:
    """A single two-layer fat-tree (leaf/spine) with one endpoint per port.

        >>> ft2(64).counts()["switches"], ft2(64).counts()["links"], ft2(64).n_gpus
        (96, 2048, 2048)
    """
    k = check_k(k)
    check_gbps(nic_gbps=nic_gbps)
    half = k // 2
    N = _nodes(endpoints, k * k // 2, f"a two-layer fat-tree of {k}-port switches")
    L = k if endpoints is None else -(-N // half)
    gpu = np.arange(N)
    return _build("ft2", k, 1, N, 1, port_gpu=gpu, port_leaf=gpu // half, port_pos=gpu % half,
                  port_plane=np.zeros_like(gpu), leaf_plane=np.zeros(L, int), nic_gbps=nic_gbps, nvlink_gbps=0.0)
