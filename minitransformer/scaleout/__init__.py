"""Scale-out: DeepSeek-V3's multi-plane fat-tree network, simulated at the level of flows.

The package answers, with numbers a student can check, how 16,384 GPUs are wired
two switch layers apart, what routing does to collective and MoE traffic on that
wiring, and why many machines in parallel beat one faster machine.

- ``topology``: two-layer fabrics as link arrays (FT2, MPFT, MRFT, ideal multi-port);
- ``costs``: FT3, count-only Slim Fly and Dragonfly formulas, the paper's Table 3;
- ``fattree3``: the three-layer fat-tree link by link, and routing on it;
- ``routing``: ECMP, static, adaptive and spraying; cross-plane forwarding;
- ``traffic``: MoE dispatch/combine with node-limited routing, collectives, stress;
- ``metrics``: loads, completion times, hops, plane changes, failures;
- ``model_traffic``: what a model's training step and MoE layer send, and speed-up;
- ``real_routing``: a model's own routing decisions (``hook_expert_ids``) on the network;
- the figures of notebook 08 live in `minitransformer.figures.scaleout`.

    >>> from minitransformer.scaleout import mpft, route, moe_dispatch, completion_time
    >>> topo = mpft(8, nodes=4)
    >>> moe = moe_dispatch(4, 8, experts=32, top_k=4, max_nodes=2, tokens_per_gpu=8, hidden=100)
    >>> completion_time(route(topo, moe.dispatch)) > 0
    True

Sources: Insights into DeepSeek-V3 (ISCA 2025, arXiv 2505.09343) and the DeepSeek-V3
technical report (arXiv 2412.19437); the guide is ``docs/scaleout.md``.
"""

from minitransformer.scaleout.metrics import completion_time, cross_plane_fraction, failure_experiment, hop_histogram, ib_bytes_per_token, per_gpu_bandwidth, spine_imbalance, summary  # noqa: F401
from minitransformer.scaleout.model_traffic import DEEPSEEK_V3, count_params, ep_time_per_layer, speedup_curve, step_traffic, time_per_output_token  # noqa: F401
from minitransformer.scaleout.routing import route  # noqa: F401
from minitransformer.scaleout.costs import dragonfly, ft3, ft3_switch_hops, slimfly, table3  # noqa: F401
from minitransformer.scaleout.fattree3 import FT3Topology, ft3_topology, route_ft3  # noqa: F401
from minitransformer.scaleout.topology import Topology, ft2, ideal_mpft, mpft, mrft  # noqa: F401
from minitransformer.scaleout.traffic import Traffic, alltoall_uniform, bisection, hierarchical_allreduce, moe_dispatch, moe_routing, permutation, ring_allreduce  # noqa: F401
