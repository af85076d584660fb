"""What a model sends over the network: a data-parallel step's all-reduce and an MoE layer's dispatch.

Three questions tie the simulator to a model:

1. How many bytes does one training step all-reduce? Every data-parallel replica
   holds the same parameters and must average its gradients: P parameters of
   ``grad_bytes`` each (a ring all-reduce then sends 2(n-1)/n of that per GPU).
2. How many bytes does one expert-parallel (EP) layer dispatch and combine? Each
   token goes to its experts: ``hidden`` elements of FP8 out, BF16 back, once per
   network copy (at most M nodes under node-limited routing).
3. Is it better to make one device faster ("legacy" scale-up) or to use many
   ("scale-out")? n devices divide the compute by n but add the communication the
   simulator measures, so the speed-up is T1 / (T1/n + T_comm(n)).

The paper's own arithmetic (ISCA §2.3.2) is reproduced exactly by
``ep_time_per_layer`` and ``time_per_output_token``: (1 B + 2 B)·32 tokens·9
experts·7K / 50 GB/s = 120.96 µs, and ×2 micro-batches ×61 layers = 14.76 ms.
note: the paper's "7K" is 7,000 there; with the true hidden size 7,168 the same
formula gives 123.86 µs.

DeepSeek-V3's numbers (``DEEPSEEK_V3``) are the published ones (technical report
Table 1 and §2): 671B parameters, 61 layers (the first 3 dense), hidden 7168, 256
routed experts of width 2048 plus 1 shared, top-8, at most 4 nodes, 64-way EP.
The split into expert and non-expert parameters is [derived] from those shapes.

Left out: overlap of communication with computation beyond the all-or-nothing
``overlap`` switch, pipeline parallelism, ZeRO sharding, FP32 master gradients,
the attention variant's exact parameter count (MLA differs a little from MHA).

    >>> round(ep_time_per_layer() * 1e6, 2), round(time_per_output_token() * 1e3, 2)
    (120.96, 14.76)
"""

from __future__ import annotations

import numpy as np

from minitransformer.core.config import ModelConfig
from minitransformer.costs import count_params as model_count_params
from minitransformer.scaleout.metrics import completion_time
from minitransformer.scaleout.routing import route
from minitransformer.scaleout.topology import IB_GBPS, check_number, check_positive, mpft
from minitransformer.scaleout.traffic import Traffic, hierarchical_allreduce, moe_dispatch

DEEPSEEK_V3 = dict(name="DeepSeek-V3", params=671e9, activated=37e9, layers=61, moe_layers=58, hidden=7168,
                   experts=256, expert_width=2048, top_k=8, shared_experts=1, max_nodes=4, ep_gpus=64,
                   gpus_per_node=8)


def ep_time_per_layer(tokens: int = 32, experts_per_token: int = 9, hidden: int = 7000, dispatch_bytes: float = 1,
                      combine_bytes: float = 2, bandwidth_GBps: float = IB_GBPS) -> float:
    """Seconds for one EP dispatch + combine over one NIC (ISCA §2.3.2): bytes / bandwidth.

    Defaults are the paper's: 32 tokens per device, 1 shared + 8 routed experts, "7K"
    hidden, FP8 out and BF16 back, 400 Gb/s = 50 GB/s.
    """
    return (dispatch_bytes + combine_bytes) * tokens * experts_per_token * hidden / (bandwidth_GBps * 1e9)


def time_per_output_token(layer_time: float | None = None, micro_batches: int = 2, layers: int = 61) -> float:
    """Seconds per output token (TPOT) when every layer's EP communication is on the critical path."""
    return (ep_time_per_layer() if layer_time is None else layer_time) * micro_batches * layers


def count_params(config: ModelConfig) -> int:
    """Parameters of our GPT for ``config``: read off the model's own init shapes (`costs.count_params`).

        >>> count_params(ModelConfig(vocab_size=10, context_length=4, d_model=8, n_layers=1, n_heads=2))
        1000
    """
    return model_count_params(config)


def deepseek_v3_params_per_gpu(ep_gpus: int = 64) -> dict:
    """[derived] V3's routed-expert parameters (58 MoE layers × 256 × 3·7168·2048) and the rest, per GPU under EP."""
    v3 = DEEPSEEK_V3
    routed = v3["moe_layers"] * v3["experts"] * 3 * v3["hidden"] * v3["expert_width"]  # SwiGLU: 3 matrices
    dense = v3["params"] - routed
    return dict(routed=routed, dense=dense, per_gpu=dense + routed / ep_gpus)


def step_traffic(model="deepseek-v3", tokens_per_gpu: int = 4096, grad_bytes: float = 2, topo=None,
                 policy: str = "adaptive", experts: int | None = None, top_k: int = 8, max_nodes: int = 4,
                 ep_nodes: int | None = None, pool: int | None = 2048, seed: int = 0) -> dict:
    """Bytes one training step all-reduces and one MoE layer dispatches, and (with ``topo``) the simulated seconds.

    Args:
        model: ``"deepseek-v3"`` (published numbers) or a ``ModelConfig`` (ours, any size).
            A dense config has expert traffic only if ``experts`` is given (a hypothetical
            MoE version with ``experts`` experts of its FFN's shape); one with ``ffn="moe"``
            uses its own experts, K and MoE layers unless ``experts`` is given.
        tokens_per_gpu: tokens each GPU routes through one MoE layer.
        grad_bytes: bytes per gradient element in the all-reduce (2 = BF16).
        topo: a topology (``mpft``, ``mrft``, ...) to simulate on; None gives bytes only.

        >>> d = step_traffic(ModelConfig.preset("toy"))
        >>> d["allreduce_bytes"] == 2 * d["params_per_gpu"], d["dispatch_bytes_per_gpu"]
        (True, 0.0)
    """
    if isinstance(model, str):
        if model.lower() != "deepseek-v3":
            raise ValueError(f"model={model!r} is not known; pass 'deepseek-v3' or a ModelConfig")
        v3 = DEEPSEEK_V3
        params = deepseek_v3_params_per_gpu(v3["ep_gpus"])["per_gpu"]
        hidden, experts, top_k, max_nodes = v3["hidden"], v3["experts"], v3["top_k"], v3["max_nodes"]
        ep_nodes = v3["ep_gpus"] // v3["gpus_per_node"] if ep_nodes is None else ep_nodes
        moe_layers = v3["moe_layers"]
    elif isinstance(model, ModelConfig):
        params, hidden, moe_layers = count_params(model), model.d_model, model.n_layers if experts else 0
        if model.ffn == "moe" and not experts:
            experts, top_k = model.n_experts, model.experts_per_token
            moe_layers = model.n_layers - model.first_dense_layers
    else:
        raise ValueError(f"model must be 'deepseek-v3' or a ModelConfig, got {type(model).__name__}")
    out = dict(params_per_gpu=float(params), allreduce_bytes=float(params * grad_bytes), moe_layers=moe_layers,
               hidden=hidden, dispatch_bytes_per_gpu=0.0)
    moe = None
    if experts and topo is not None:
        En = ep_nodes or topo.nodes
        moe = moe_dispatch(topo.nodes, topo.gpus_per_node, experts, top_k, min(max_nodes, En), tokens_per_gpu,
                           hidden, ep_nodes=En, pool=pool, seed=seed)
        out["dispatch_bytes_per_gpu"] = float(moe.dispatch.bytes.sum() / topo.n_gpus)
        out["network_copies_per_token"] = moe.copies["dedup"] / moe.tokens
    elif experts:
        out["dispatch_bytes_per_gpu"] = float(tokens_per_gpu * min(max_nodes, top_k) * hidden)  # upper bound: M copies
    if topo is not None:
        phases = [route(topo, t, policy) for t in hierarchical_allreduce(topo.nodes, topo.gpus_per_node,
                                                                          out["allreduce_bytes"])]
        out["allreduce_time_s"] = completion_time(phases)
        if moe is not None:
            out["dispatch_time_s"] = completion_time(route(topo, moe.dispatch, policy))
            out["combine_time_s"] = completion_time(route(topo, moe.combine, policy))
    return out


def allreduce_seconds(n_gpus: int, nbytes: float, k: int = 64, policy: str = "adaptive") -> float:
    """Simulated seconds to all-reduce ``nbytes`` over ``n_gpus`` GPUs of an MPFT (8 per node).

    One node's GPUs use a ring over NVLink; more nodes use the hierarchical all-reduce.
    """
    if check_positive("n_gpus", n_gpus) == 1:
        return 0.0
    G = 8
    if n_gpus <= G:
        topo = mpft(k, planes=G, nodes=1)
        ring = np.arange(n_gpus)
        t = Traffic(ring, np.roll(ring, -1), np.full(n_gpus, 2 * (n_gpus - 1) / n_gpus * nbytes), name="NVLink ring")
        return completion_time(route(topo, t, policy))
    if n_gpus % G:
        raise ValueError(f"n_gpus={n_gpus} must be at most {G} or a multiple of {G} (whole nodes)")
    topo = mpft(k, planes=G, nodes=n_gpus // G)
    return completion_time([route(topo, t, policy) for t in hierarchical_allreduce(topo.nodes, G, nbytes)])


def speedup_curve(device_counts, step_flops: float, grad_bytes_total: float, device_flops: float = 400e12,
                  legacy_factor: float = 2.0, overlap: bool = False, k: int = 64) -> dict:
    """Speed-up against one device: n devices (simulated all-reduce) vs one device ``legacy_factor`` times faster.

    Args:
        device_counts: GPU counts to try (1..8, or multiples of 8).
        step_flops: FLOPs of one training step of the global batch.
        grad_bytes_total: gradient bytes every data-parallel GPU all-reduces per step.
        device_flops: achieved FLOP/s of one device.
        overlap: hide communication behind computation (time = max instead of sum).

        >>> c = speedup_curve([1, 8], step_flops=1e15, grad_bytes_total=1e9)
        >>> float(c["scale_out"][0]), bool(c["scale_out"][1] > 7), float(c["legacy"][1])
        (1.0, True, 2.0)
    """
    n = np.asarray(device_counts)
    if n.ndim != 1 or not len(n) or n.dtype.kind not in "iu" or n.min() < 1:
        raise ValueError(f"device_counts={device_counts!r} must be a list of positive ints (GPU counts: 1..8 or "
                         "multiples of 8)")
    T1 = check_number("step_flops", step_flops) / check_number("device_flops", device_flops, " (achieved FLOP/s)")
    check_number("grad_bytes_total", grad_bytes_total, zero=True)
    check_number("legacy_factor", legacy_factor)
    comm = np.array([allreduce_seconds(int(x), grad_bytes_total, k) for x in n])
    compute = T1 / n
    total = np.maximum(compute, comm) if overlap else compute + comm
    return dict(devices=n, scale_out=T1 / total, legacy=np.full(len(n), float(legacy_factor)), comm_s=comm,
                compute_s=compute, efficiency=T1 / total / n)
