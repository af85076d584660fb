"""Traffic: who sends how many bytes to whom, for MoE layers, collectives and stress patterns.

A ``Traffic`` is three equally long arrays, one entry per flow: source GPU,
destination GPU and bytes (GPU = node·G + local index). A pattern whose phases run
one after another (a hierarchical all-reduce) is a list of them.

MoE dispatch follows DeepSeek-V3's node-limited routing: 256 routed experts in one
group per node of the expert-parallel (EP) group; each token scores every expert
(sigmoid of a Gaussian logit, optionally skewed by Zipf popularity), keeps the M
nodes with the largest sum of their top K/M scores, and takes its top K experts
on those nodes. Two ways to send it:

- ``dedup`` (DeepEP's normal kernels): one network copy per target *node*, to the
  GPU with the sender's local index (so it stays in the sender's plane), then
  NVLink to each expert's GPU. Network copies per token: at most M (the paper's 8t -> Mt).
- ``direct`` (a pure-RDMA low-latency mode): one network copy per target GPU.

Combine sends the expert outputs back along the reversed flows (2 bytes per
element, BF16, against 1 for the FP8 dispatch).

Sources: DeepSeek-V3 technical report (arXiv 2412.19437) §2.1.2 and §3.2.2;
ISCA 2025 (arXiv 2505.09343) §2.3.2, §4.3, §5.1; Patarasuk & Yuan (2009) for the
ring all-reduce's 2(n-1)/n bytes per GPU.

Left out: the shared expert (it is on every GPU: no traffic), token dropping and
capacity limits, the gating bias that balances load in training, and the order of
the steps of a ring (one step's flows, times the number of steps, carry the same
bytes on the same links).

    >>> t = alltoall_uniform(4, 10.0)
    >>> len(t), float(t.bytes.sum())
    (12, 120.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minitransformer.scaleout.topology import check_memory, check_number, check_positive, memory_limit_bytes

MODES = ("dedup", "direct")
ROUTING_BYTES = 28  # peak bytes per (token, expert) score while routing (tracemalloc: 24.5; rounded up)


@dataclass
class Traffic:
    """Flows: (F,) source GPUs, destination GPUs, bytes, and optional ECMP flow ids."""

    src: np.ndarray
    dst: np.ndarray
    bytes: np.ndarray
    flow_id: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        self.src = np.asarray(self.src, np.int64)
        self.dst = np.asarray(self.dst, np.int64)
        self.bytes = np.asarray(self.bytes, np.float64)

    def __len__(self) -> int:
        return len(self.src)

    def reversed(self, scale: float = 1.0, name: str = "") -> "Traffic":
        """The same flows backwards (a combine after a dispatch), bytes times ``scale``."""
        return Traffic(self.dst, self.src, self.bytes * scale, self.flow_id, name or f"{self.name} reversed")


# ---------------------------------------------------------------------- collectives and stress patterns
def alltoall_uniform(n_gpus: int, msg_bytes: float) -> Traffic:
    """Every GPU sends ``msg_bytes`` to every other GPU (NCCL all-to-all): n(n-1) flows."""
    n, msg_bytes = check_positive("n_gpus", n_gpus), check_number("msg_bytes", msg_bytes, zero=True)
    per_pair = 48  # bytes of the n² pairs while building (tracemalloc: 41)
    check_memory(per_pair * n * n, f"an all-to-all of {n:,} GPUs ({n * (n - 1):,} flows)",
                 f"use n_gpus <= {int(np.sqrt(memory_limit_bytes() / per_pair)):,}, or a permutation or "
                 "bisection, which stress the same links with n flows")
    a, b = np.divmod(np.arange(n * n), n)
    keep = a != b
    return Traffic(a[keep], b[keep], np.full(int(keep.sum()), float(msg_bytes)), name="all-to-all")


def ring_allreduce(nodes: int, gpus_per_node: int, nbytes: float, ring: str = "rail",
                   interleave: int | None = None) -> Traffic:
    """The flows of ring all-reduces of ``nbytes`` per GPU: each GPU sends 2(r-1)/r·nbytes to its successor.

    ``ring="rail"``: G rings, ring i over the GPUs with local index i of every node (a
    data-parallel group per rail; on an MPFT each ring stays in plane i). ``ring="flat"``:
    one ring over all GPUs in node-major order, whose node-boundary hops change plane.
    ``interleave=h`` orders the nodes 0, h, 2h, ..., 1, h+1, ... so that consecutive ring
    members sit under different leaves (h = k/2 nodes per leaf): every hop then crosses
    the spines, which is where routing policies differ.

        >>> t = ring_allreduce(4, 2, 8.0)
        >>> t.src.tolist(), t.dst.tolist(), float(t.bytes[0])
        ([0, 1, 2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7, 0, 1], 12.0)
    """
    N, G = check_positive("nodes", nodes), check_positive("gpus_per_node", gpus_per_node)
    nbytes = check_number("nbytes", nbytes, zero=True)
    if ring not in ("rail", "flat"):
        raise ValueError(f"ring={ring!r} is not valid; choose 'rail' or 'flat'")
    order = np.arange(N)
    if interleave is not None:
        h = check_positive("interleave", interleave)
        order = np.lexsort((order // h, order % h))  # nodes sorted by position in leaf, then leaf
    succ = np.empty(N, np.int64)
    succ[order] = np.roll(order, -1)  # the next node in the ring order
    gpu = np.arange(N * G)
    node, local = np.divmod(gpu, G)
    if ring == "rail":
        r, dst = N, succ[node] * G + local
    else:  # node-major: GPU i -> i+1 inside a node, last GPU -> first GPU of the next node
        r = N * G
        dst = np.where(local < G - 1, gpu + 1, succ[node] * G)
    keep = dst != gpu
    return Traffic(gpu[keep], dst[keep], np.full(int(keep.sum()), 2 * (r - 1) / r * nbytes), name=f"{ring} ring all-reduce")


def hierarchical_allreduce(nodes: int, gpus_per_node: int, nbytes: float) -> list[Traffic]:
    """Three phases: NVLink reduce-scatter inside each node, a rail ring over nodes on 1/G of the data, NVLink all-gather.

        >>> [len(p) for p in hierarchical_allreduce(2, 4, 8.0)]
        [24, 8, 24]
    """
    N, G = check_positive("nodes", nodes), check_positive("gpus_per_node", gpus_per_node)
    nbytes = check_number("nbytes", nbytes, zero=True)
    gpu = np.arange(N * G)
    a, j = np.repeat(gpu, G), np.tile(np.arange(G), N * G)
    b = (a // G) * G + j
    keep = a != b  # every GPU sends 1/G of its buffer to each node peer
    intra = Traffic(a[keep], b[keep], np.full(int(keep.sum()), nbytes / G), name="NVLink reduce-scatter")
    inter = ring_allreduce(N, G, nbytes / G, ring="rail")
    inter.name = "rail ring all-reduce"
    gather = Traffic(intra.src, intra.dst, intra.bytes, name="NVLink all-gather")
    return [intra, inter, gather]


def permutation(n_gpus: int, nbytes: float, seed: int = 0) -> Traffic:
    """Each GPU sends ``nbytes`` to one other GPU, and each GPU receives from one (a random derangement-like map).

    One random cycle through all GPUs, so it needs at least two.
    """
    n, nbytes = check_positive("n_gpus", n_gpus), check_number("nbytes", nbytes, zero=True)
    if n < 2:
        raise ValueError("a permutation needs n_gpus >= 2: a single GPU has nobody else to send to")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    dst = np.empty(n, np.int64)
    dst[perm] = np.roll(perm, 1)  # one random cycle through all GPUs: nobody sends to itself
    return Traffic(np.arange(n), dst, np.full(n, float(nbytes)), name="permutation")


def bisection(n_gpus: int, nbytes: float, seed: int = 0) -> Traffic:
    """A random half of the GPUs sends ``nbytes`` to the other half, one partner each, both ways."""
    n, nbytes = check_positive("n_gpus", n_gpus), check_number("nbytes", nbytes, zero=True)
    if n % 2:
        raise ValueError(f"bisection needs an even number of GPUs, got {n}")
    perm = np.random.default_rng(seed).permutation(n)
    a, b = perm[: n // 2], perm[n // 2:]
    return Traffic(np.concatenate([a, b]), np.concatenate([b, a]), np.full(n, float(nbytes)), name="bisection")


# ---------------------------------------------------------------------- MoE: node-limited routing
def moe_routing(n_tokens: int, experts: int = 256, top_k: int = 8, groups: int = 8, max_nodes: int = 4,
                rng: np.random.Generator | None = None, skew: float = 0.0) -> np.ndarray:
    """Node-limited top-K routing: (T, K) expert ids, each token on at most ``max_nodes`` of the ``groups`` nodes.

    Experts ``g·E/groups ... (g+1)·E/groups - 1`` live on node g. A node's score is the
    sum of its top K/M expert affinities; the M best nodes are kept, then the top K
    experts among theirs (DeepSeek-V3 §2.1.2).

        >>> e = moe_routing(5, experts=16, top_k=4, groups=4, max_nodes=2, rng=np.random.default_rng(0))
        >>> e.shape, max(len(set(row)) for row in (e // 4).tolist())  # nodes per token (4 experts a node)
        ((5, 4), 2)
    """
    T, E, K = check_positive("n_tokens", n_tokens), check_positive("experts", experts), check_positive("top_k", top_k)
    Gn, M = check_positive("groups", groups), check_positive("max_nodes", max_nodes)
    if E % Gn:
        raise ValueError(f"experts={E} must split evenly over {Gn} nodes")
    if M > Gn:
        raise ValueError(f"max_nodes={M} is larger than the {Gn} nodes of the expert-parallel group; "
                         f"use max_nodes <= {Gn}")
    per = E // Gn
    if K > M * per:
        raise ValueError(f"top_k={K} experts do not fit on max_nodes={M} nodes of {per} experts each")
    skew = check_number("skew", skew, " (0: all experts equally popular; larger: a steeper Zipf popularity)", zero=True)
    check_memory(ROUTING_BYTES * T * E, f"routing {T:,} tokens over {E} experts",
                 "route fewer tokens (moe_dispatch: pass pool= to draw decisions from a sample)")
    rng = np.random.default_rng(0) if rng is None else rng
    logits = rng.standard_normal((T, E), dtype=np.float32)  # (T, E)
    if skew:
        rank = rng.permutation(E)  # a Zipf popularity: expert with rank r gets bias -skew·log(r+1)
        logits += (-skew * np.log1p(rank)).astype(np.float32)
    scores = 1.0 / (1.0 + np.exp(-logits))  # (T, E) sigmoid affinities
    r = max(1, K // M)
    by_node = scores.reshape(T, Gn, per)  # (T, Gn, E/Gn)
    node_score = -np.partition(-by_node, r - 1, axis=2)[:, :, :r].sum(axis=2)  # (T, Gn) sum of each node's top r
    keep = np.argpartition(-node_score, M - 1, axis=1)[:, :M]  # (T, M) chosen nodes
    allowed = np.zeros((T, Gn), bool)
    np.put_along_axis(allowed, keep, True, axis=1)
    masked = np.where(allowed[:, :, None], by_node, -np.inf).reshape(T, E)  # (T, E)
    return np.argpartition(-masked, K - 1, axis=1)[:, :K].copy()  # (T, K) note: a copy frees the (T, E) base


def _indicator(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int, count: bool = False) -> np.ndarray:
    """(n_rows, n_cols) float32 matrix: 1 where (row, col) occurs (or how often, with ``count``)."""
    m = np.bincount(rows * n_cols + cols, minlength=n_rows * n_cols).reshape(n_rows, n_cols)
    return (m if count else m > 0).astype(np.float32)


def _dispatch_memory(Ng, D, En, G, T, experts, n_pat, pool, synthetic, mode) -> float:
    """Peak bytes of ``moe_dispatch``'s largest arrays (per-element costs measured with tracemalloc, rounded up)."""
    cols = D + 2 * En  # columns of the pattern matrix and of the per-source counts C
    nbytes = n_pat * max(ROUTING_BYTES * experts * synthetic, 16 * cols)  # (n_pat, E) scores, then the patterns
    if pool is not None:  # one chunk of sources: each token's draw, then the (sources, n_pat) counts
        rows = min(max(1, 1024 // D), Ng) * D
        nbytes += 4 * n_pat * cols + rows * (16 * T + 12 * n_pat)
    flows = Ng * (D * (D - 1) if mode == "direct" else D * En + G * G * En)
    return nbytes + 4 * Ng * D * cols + 80 * flows


@dataclass
class MoETraffic:
    """One MoE layer's dispatch and combine, with the counts behind them.

    Attributes:
        dispatch, combine: the flows.
        tokens: tokens routed (all GPUs).
        copies: network copies of a token, summed over tokens, for the three ways of
            counting: ``per_expert`` (one per remote expert: the paper's 8t),
            ``direct`` (one per remote GPU) and ``dedup`` (one per remote node: Mt).
        nodes_per_token: (n,) distinct nodes each decision in ``experts`` reaches.
        experts: (n, K) expert ids: the first expert-parallel group's tokens, ordered by
            source GPU (with ``pool``: the pool every token's decision was drawn from).
    """

    dispatch: Traffic
    combine: Traffic
    tokens: int
    copies: dict = field(default_factory=dict)
    nodes_per_token: np.ndarray | None = None
    experts: np.ndarray | None = None


def moe_dispatch(nodes: int, gpus_per_node: int = 8, experts: int = 256, top_k: int = 8, max_nodes: int = 4,
                 tokens_per_gpu: int = 128, hidden: int = 7168, dispatch_bytes: float = 1, combine_bytes: float = 2,
                 skew: float = 0.0, mode: str = "dedup", ep_nodes: int | None = None, pool: int | None = None,
                 seed: int = 0, routing: np.ndarray | None = None) -> MoETraffic:
    """The flows of one MoE layer's dispatch and combine under node-limited routing.

    Args:
        nodes, gpus_per_node: the cluster; it is cut into expert-parallel groups of
            ``ep_nodes`` nodes (default: all nodes), each holding all ``experts``.
        tokens_per_gpu: tokens each GPU routes.
        hidden, dispatch_bytes, combine_bytes: a token is ``hidden`` elements of FP8 on the
            way out and BF16 on the way back.
        mode: ``"dedup"`` or ``"direct"`` (see the module docstring).
        pool: ``None`` routes every token; an int routes ``pool`` tokens exactly and lets
            each token draw its decision from them (a bootstrap that keeps 16,384 GPUs x
            4,096 tokens in seconds).
        routing: (n, K) expert ids, a model's own decisions (``hook_expert_ids``), in place of
            synthetic ones: token ``r`` is sent by GPU ``r // (n / D)`` of every expert-parallel
            group (n must be a multiple of its D GPUs), and expert e lives on GPU
            ``e // (experts / D)``. ``top_k``, ``tokens_per_gpu``, ``max_nodes`` and ``skew``
            then come from (or do not apply to) the table.

        >>> m = moe_dispatch(4, 8, experts=64, top_k=8, max_nodes=2, tokens_per_gpu=16, hidden=10)
        >>> m.copies["dedup"] <= 2 * m.tokens, m.copies["per_expert"] <= 8 * m.tokens
        (True, True)
    """
    N, G = check_positive("nodes", nodes), check_positive("gpus_per_node", gpus_per_node)
    En = N if ep_nodes is None else check_positive("ep_nodes", ep_nodes)
    experts, hidden = check_positive("experts", experts), check_positive("hidden", hidden)
    dispatch_bytes = check_number("dispatch_bytes", dispatch_bytes, " (bytes per element: 1 for FP8)")
    combine_bytes = check_number("combine_bytes", combine_bytes, " (bytes per element: 2 for BF16)")
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not valid; choose one of {', '.join(map(repr, MODES))}")
    if N % En:
        raise ValueError(f"nodes={N} must be a multiple of ep_nodes={En} (whole expert-parallel groups)")
    if routing is None and max_nodes > En:
        raise ValueError(f"max_nodes={max_nodes} is larger than the {En} nodes a token can reach; "
                         f"use max_nodes <= {En}")
    Ng, D, T = N // En, En * G, check_positive("tokens_per_gpu", tokens_per_gpu)  # groups, GPUs per group, tokens
    if routing is not None:  # the model's own decisions, the same table for every group
        routing, pool = np.asarray(routing), None
        if routing.ndim != 2 or routing.dtype.kind not in "iu" or len(routing) % D or not len(routing):
            raise ValueError(f"routing must be an (n, K) int array of expert ids with n a multiple of the {D} GPUs "
                             f"of an expert-parallel group; got shape {routing.shape}, dtype {routing.dtype}")
        if routing.min() < 0 or routing.max() >= experts:
            raise ValueError(f"routing holds expert ids {routing.min()}..{routing.max()}, outside 0..{experts - 1}; "
                             f"pass experts= the model's n_experts")
        T, top_k = len(routing) // D, routing.shape[1]
    if experts % D:
        raise ValueError(f"experts={experts} must split evenly over the {D} GPUs of an expert-parallel group")
    per_gpu = experts // D
    rng = np.random.default_rng(seed)
    n_pat = D * T if pool is None else check_positive("pool", pool)
    check_memory(_dispatch_memory(Ng, D, En, G, T, experts, n_pat, pool, routing is None, mode),
                 f"an MoE dispatch of {N * G:,} GPUs x {T:,} tokens ({experts} experts, {D} GPUs per group)",
                 ("use fewer tokens_per_gpu, a smaller pool" if pool is not None else
                  "pass pool= (e.g. pool=4096: decisions drawn from 4,096 tokens routed exactly), fewer tokens_per_gpu")
                 + " or smaller expert-parallel groups (ep_nodes=)")

    def pattern_matrix(e):  # e: (n_pat, K) expert ids -> (n_pat, D + 2En) indicators and counts
        rows = np.repeat(np.arange(len(e)), e.shape[1])
        gpu, node = e.ravel() // per_gpu, e.ravel() // (per_gpu * G)
        return np.concatenate([_indicator(rows, gpu, len(e), D), _indicator(rows, node, len(e), En),
                               _indicator(rows, node, len(e), En, count=True)], axis=1)

    # per (group, source GPU): tokens reaching each GPU, each node (both counted once per token),
    # and (token, expert) pairs per node; columns [0, D), [D, D+En), [D+En, D+2En) of one array
    C = np.empty((Ng, D, D + 2 * En), np.float32)
    if pool is None:
        for g in range(Ng):  # one expert-parallel group at a time (no loop over tokens or flows)
            e = routing if routing is not None else moe_routing(n_pat, experts, top_k, En, max_nodes, rng, skew)
            if g == 0:
                shared = e  # the first group's decisions are the ones reported
            C[g] = pattern_matrix(e).reshape(D, T, -1).sum(axis=1)  # tokens are ordered by source GPU
    else:
        shared = moe_routing(n_pat, experts, top_k, En, max_nodes, rng, skew)
        mat = pattern_matrix(shared)  # (n_pat, D + 2En)
        chunk = max(1, 1024 // D)  # groups per matrix product: big products, bounded memory
        for g0 in range(0, Ng, chunk):
            n = min(chunk, Ng - g0)
            pick = rng.integers(0, n_pat, size=(n * D, T))  # each token's decision, drawn from the pool
            W = np.bincount((np.arange(n * D)[:, None] * n_pat + pick).ravel(), minlength=n * D * n_pat)
            W = W.reshape(n * D, n_pat).astype(np.float32)  # (n·D, n_pat) tokens per (source, decision)
            C[g0:g0 + n] = (W @ mat).reshape(n, D, -1)
    C_gpu, C_node, C_exp = C[:, :, :D], C[:, :, D:D + En], C[:, :, D + En:]
    tok_bytes = hidden * dispatch_bytes
    s_local = np.arange(D)
    s_node = s_local // G  # node within the group of each source GPU
    base = (np.arange(Ng) * D)[:, None, None]  # GPU offset of each group
    remote_node = s_node[:, None] != np.arange(En)[None, :]  # (D, En)
    remote_gpu = s_node[:, None] != (s_local // G)[None, :]  # (D, D)
    copies = dict(per_expert=float((C_exp * remote_node).sum()), direct=float((C_gpu * remote_gpu).sum()),
                  dedup=float((C_node * remote_node).sum()))
    if mode == "direct":
        gs, gd = np.nonzero(s_local[:, None] != s_local[None, :])  # every ordered pair of distinct GPUs
        src = (base[:, :, 0] + gs[None, :]).ravel()  # (Ng·D·(D-1),)
        dst = (base[:, :, 0] + gd[None, :]).ravel()
        w = C_gpu[:, gs, gd].ravel() * tok_bytes
    else:
        # network leg: source (n, i) -> (n', i) for every remote node n' it reaches
        i = s_local % G
        ss, nn = np.nonzero(remote_node)
        src_ib = (base[:, :, 0] + ss[None, :]).ravel()
        dst_ib = (base[:, :, 0] + (nn * G + i[ss])[None, :]).ravel()
        w_ib = C_node[:, ss, nn].ravel() * tok_bytes
        # NVLink fan-out on the target node: (n', i) -> (n', j), summed over the source nodes
        fan = C_gpu.reshape(Ng, En, G, En, G).sum(axis=1)  # (Ng, i, n', j)
        ii, n2, jj = np.nonzero(np.broadcast_to(np.arange(G)[:, None, None] != np.arange(G), (G, En, G)))  # i != j
        src_nv = (base[:, :, 0] + (n2 * G + ii)[None, :]).ravel()
        dst_nv = (base[:, :, 0] + (n2 * G + jj)[None, :]).ravel()
        w_nv = fan[:, ii, n2, jj].ravel() * tok_bytes
        src, dst, w = np.concatenate([src_ib, src_nv]), np.concatenate([dst_ib, dst_nv]), np.concatenate([w_ib, w_nv])
    keep = w > 0
    dispatch = Traffic(src[keep], dst[keep], w[keep], name=f"MoE dispatch ({mode})")
    combine = dispatch.reversed(combine_bytes / dispatch_bytes, name=f"MoE combine ({mode})")
    node_of = np.sort(shared // (per_gpu * G), axis=1)  # (n_pat, K) nodes of each decision's experts
    nodes_per_token = (node_of[:, 1:] != node_of[:, :-1]).sum(axis=1) + 1
    return MoETraffic(dispatch, combine, N * G * T, copies, nodes_per_token, shared)
