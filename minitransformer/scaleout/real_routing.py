"""A model's own routing on the simulated network: experts placed on GPUs, tokens sent to them.

`traffic.moe_dispatch` draws synthetic routing decisions; here they come from a
model with ``ffn="moe"`` instead: ``hook_expert_ids (B, T, K)`` of a run on real
text, one table per MoE layer. Each expert-parallel group of D GPUs holds all E
experts, expert e on GPU ``e // (E / D)`` (so on node ``e // (E / nodes)``), and
token r is sent by GPU ``r // (n / D)``: with ``n_expert_groups`` equal to the
number of nodes, the model's expert groups are the nodes, and its
``groups_per_token`` is DeepSeek-V3's M, the most nodes a token may reach.

The numbers this answers:

- network copies per token: one per remote expert (``per_expert``, the report's 8t for
  K = 8), one per remote GPU (``direct``), one per remote node (``dedup``, at most Mt);
- bytes that cross between nodes, for a token of ``hidden`` elements (FP8 out);
- the seconds the dispatch and combine take on the multi-plane fat-tree (one plane
  per GPU's NIC, `topology.mpft`) and on one plane shared by all rails
  (`topology.mrft`, the multi-rail fat-tree: same NICs, one spine layer).

    >>> table = np.array([[2, 3], [0, 2], [2, 3], [0, 1]])  # 4 tokens, one per GPU of 2 nodes x 2
    >>> r = dispatch_report(table, nodes=2, gpus_per_node=2, experts=4, hidden=10, k=4)
    >>> r["copies"], r["cross_node_bytes"]
    ({'per_expert': 5.0, 'direct': 5.0, 'dedup': 3.0}, 30.0)

Sources: DeepSeek-V3 technical report (arXiv 2412.19437) §2.1.2 and §3.2.2 (node-limited
routing, dispatch deduplicated per node); ISCA 2025 (arXiv 2505.09343) §5.1 (the planes).

Left out: the same as `traffic.moe_dispatch` (no capacity limits, the shared expert sends
nothing), and time: the flows of one layer are one fluid step, as there.
"""

from __future__ import annotations

import numpy as np

from minitransformer.scaleout.metrics import completion_time
from minitransformer.scaleout.routing import route
from minitransformer.scaleout.topology import mpft, mrft
from minitransformer.scaleout.traffic import Traffic, moe_dispatch


def expert_ids(model, ids) -> dict[int, np.ndarray]:
    """``{layer: (B*T, K) expert ids}`` of every MoE layer of ``model`` on ``ids (B, T)``, rows in batch-major order.

    Row ``b*T + t`` is token t of sequence b, so with ``B`` a multiple of the GPUs each GPU
    sends whole sequences.
    """
    if getattr(model.config, "ffn", None) != "moe":
        raise ValueError(f"the model has ffn={model.config.ffn!r}; routing decisions need a model with ffn='moe'")
    _, cache = model.run_with_cache(np.asarray(ids), names_filter=lambda n: n.endswith("mlp.hook_expert_ids"))
    out = {}
    for name in cache.keys():
        layer = int(name.split(".")[1])
        e = cache[name]  # (B, T, K)
        out[layer] = e.reshape(-1, e.shape[-1])  # (B, T, K) -> (B*T, K)
    return out


def cross_node_bytes(traffic: Traffic, gpus_per_node: int) -> float:
    """Bytes of the flows whose source and destination GPUs sit on different nodes."""
    remote = traffic.src // gpus_per_node != traffic.dst // gpus_per_node
    return float(traffic.bytes[remote].sum())


def dispatch_report(routing: np.ndarray, nodes: int, gpus_per_node: int, experts: int, hidden: int = 7168,
                    k: int = 8, policy: str = "adaptive", mode: str = "dedup") -> dict:
    """One MoE layer's dispatch and combine for a routing table, counted and simulated.

    Args:
        routing: (n, K) expert ids (`expert_ids` of a model), n a multiple of nodes x gpus_per_node.
        nodes, gpus_per_node: the cluster, one expert-parallel group holding all ``experts``.
        hidden: elements per token (FP8 on the way out, BF16 back).
        k: switch ports of the fat-trees (small: a handful of nodes).
        policy, mode: the routing policy (`routing.route`) and ``"dedup"`` or ``"direct"`` sends.

    Returns a dict: ``tokens``; ``copies`` (network copies summed over tokens, three ways,
    see `traffic.MoETraffic`); ``copies_per_token``; ``nodes_per_token`` (mean and max over
    tokens, the sender's node included when it holds an expert); ``cross_node_bytes`` of the
    dispatch; and the seconds of dispatch + combine on the multi-plane network (``mpft_s``)
    and on one plane (``single_plane_s``).
    """
    m = moe_dispatch(nodes, gpus_per_node, experts, hidden=hidden, mode=mode, routing=routing)
    copies = {key: float(v) for key, v in m.copies.items()}
    seconds = {}
    for label, topo in (("mpft_s", mpft(k, planes=gpus_per_node, nodes=nodes)),
                        ("single_plane_s", mrft(k, rails=gpus_per_node, nodes=nodes))):
        seconds[label] = completion_time([route(topo, m.dispatch, policy), route(topo, m.combine, policy)])
    return dict(tokens=m.tokens, copies=copies, copies_per_token={key: v / m.tokens for key, v in copies.items()},
                nodes_per_token=(float(m.nodes_per_token.mean()), int(m.nodes_per_token.max())),
                cross_node_bytes=cross_node_bytes(m.dispatch, gpus_per_node), **seconds)
