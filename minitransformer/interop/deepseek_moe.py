"""DeepSeek-V3's mixture-of-experts layers in ``transformers``' checkpoint layout.

`deepseek` holds the name table; this module holds what the mixture of experts
adds to it: the config fields, and the one place where the two layouts differ in
more than names. We store the E routed experts of a layer stacked, ``W_gate``,
``W_in (E, C, F_e)`` and ``W_out (E, F_e, C)``; a DeepSeek-V3 checkpoint (the hub's,
and what ``save_pretrained`` writes) stores one tensor per expert,
``model.layers.{i}.mlp.experts.{j}.gate_proj.weight (M, C)``. So before the table is
applied the stacks are split into per-expert entries (``blocks.1.mlp.experts.3.W_gate``),
and after an import they are stacked again.

Config fields (ours -> DeepSeek-V3's): ``n_experts`` -> ``n_routed_experts``,
``n_shared_experts`` -> ``n_shared_experts``, ``experts_per_token`` ->
``num_experts_per_tok``, ``n_expert_groups`` -> ``n_group``, ``groups_per_token`` ->
``topk_group``, ``expert_width`` -> ``moe_intermediate_size``, ``routed_scaling`` ->
``routed_scaling_factor``, ``normalize_gates`` -> ``norm_topk_prob``,
``first_dense_layers`` -> ``first_k_dense_replace``. The router bias ``b_router`` is the
gate's ``e_score_correction_bias``. The training-only settings (``balance_speed``,
``balance_loss``) have no place in a checkpoint and come back at their defaults.

note: with no shared experts, DeepSeek-V3 still has a ``shared_experts`` MLP, zero
wide (its tensors have a 0 in their shape); we write those empty tensors so that
``from_pretrained`` finds every tensor it expects, and accept a file without them.
"""

from __future__ import annotations

import re

import numpy as np

from ..core.values import is_int
from .hf_checkpoint import number

EXPERT_KEYS = ("W_gate", "W_in", "W_out")  # stacked (E, ...) in our parameters
SHARED_KEYS = ("W_gate_shared", "W_in_shared", "W_out_shared")
DEFAULTS = dict(n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8, n_group=8, topk_group=4,
                moe_intermediate_size=2048, routed_scaling_factor=2.5, norm_topk_prob=True)  # DeepseekV3Config's


def is_moe_layer(config, i: int) -> bool:
    return config.ffn == "moe" and i >= config.first_dense_layers


def sizes(config) -> dict:
    """The size letters of the MoE rows: E experts, M expert width, SM the shared experts' width."""
    if config.ffn != "moe":
        return {"E": 0, "M": 0, "SM": 0}
    return {"E": config.n_experts, "M": config.expert_width, "SM": config.n_shared_experts * config.expert_width}


def expand_experts(table: list, n_experts: int) -> list:
    """The table with every ``{j}`` row repeated for experts ``0..n_experts-1`` (``{i}`` left for the layer)."""
    out = []
    for hf, shape, ours, how in table:
        if "{j}" in hf:
            out += [(hf.replace("{j}", str(j)), shape, ours.replace("{j}", str(j)), how) for j in range(n_experts)]
        else:
            out.append((hf, shape, ours, how))
    return out


def split_experts(flat: dict, config) -> dict:
    """Our flat parameters with each MoE layer's stacked experts as one entry per expert (and the
    zero-wide shared MLP DeepSeek-V3 keeps when there are no shared experts)."""
    out = dict(flat)
    for i in range(config.n_layers):
        if not is_moe_layer(config, i):
            continue
        p = f"blocks.{i}.mlp."
        for key in EXPERT_KEYS:
            stack = out.pop(p + key)  # (E, C, F_e) or (E, F_e, C)
            for j in range(stack.shape[0]):
                out[f"{p}experts.{j}.{key}"] = stack[j]
        if config.n_shared_experts == 0:
            C = config.d_model
            for key, shape in zip(SHARED_KEYS, ((C, 0), (C, 0), (0, C))):
                out[p + key] = np.zeros(shape, np.float32)
    return out


def stack_experts(flat: dict, config) -> dict:
    """The inverse of `split_experts`: per-expert entries stacked back, empty shared MLPs dropped."""
    out, experts = {}, {}
    for name, value in flat.items():
        m = re.fullmatch(r"(blocks\.\d+\.mlp\.)experts\.(\d+)\.(\w+)", name)
        if m:
            experts.setdefault(m.group(1) + m.group(3), {})[int(m.group(2))] = value
        elif name.endswith(SHARED_KEYS) and config.n_shared_experts == 0:
            continue
        else:
            out[name] = value
    for name, per in experts.items():
        out[name] = np.stack([per[j] for j in range(len(per))])  # E x (C, F_e) -> (E, C, F_e)
    return out


def fill_empty_shared(tensors: dict, config) -> None:
    """Add the zero-wide shared-expert tensors a file may omit when there are no shared experts."""
    if config.ffn != "moe" or config.n_shared_experts:
        return
    C = config.d_model
    for i in range(config.first_dense_layers, config.n_layers):
        for name, shape in (("gate_proj", (0, C)), ("up_proj", (0, C)), ("down_proj", (C, 0))):
            tensors.setdefault(f"model.layers.{i}.mlp.shared_experts.{name}.weight", np.zeros(shape, np.float32))


def problems(config) -> list[str]:
    """What a DeepSeek-V3 checkpoint cannot express about ``config``'s mixture of experts."""
    if config.ffn != "moe":
        return []
    found = []
    if config.expert_ffn != "swiglu":
        found.append(f"expert_ffn={config.expert_ffn!r} (DeepSeek-V3's experts are SwiGLU MLPs)")
    if config.dense_ffn != "swiglu" and config.first_dense_layers:
        found.append(f"dense_ffn={config.dense_ffn!r} (DeepSeek-V3's dense layers are SwiGLU MLPs)")
    if config.n_experts // config.n_expert_groups < 2:
        found.append(f"n_experts={config.n_experts} in {config.n_expert_groups} groups (DeepSeek-V3 scores a group "
                     "by its two best experts, so every group needs at least 2)")
    return found


def config_to_hf(config) -> dict:
    """The ``config.json`` entries of the mixture of experts (the dense model's too: no MoE layer)."""
    if config.ffn != "moe":
        return {"first_k_dense_replace": config.n_layers}  # every layer has the dense MLP
    return {"first_k_dense_replace": config.first_dense_layers, "n_routed_experts": config.n_experts,
            "n_shared_experts": config.n_shared_experts, "num_experts_per_tok": config.experts_per_token,
            "n_group": config.n_expert_groups, "topk_group": config.groups_per_token,
            "moe_intermediate_size": config.expert_width, "routed_scaling_factor": float(config.routed_scaling),
            "norm_topk_prob": config.normalize_gates}


def config_from_hf(hf: dict, n_layers, source: str) -> dict:
    """Our `ModelConfig` keywords for the mixture of experts of a ``config.json`` (``{"ffn": "swiglu"}`` if none)."""
    first = hf.get("first_k_dense_replace", 3)
    if first is not None and (not is_int(first) or first < 0):
        raise ValueError(f"{source}: first_k_dense_replace={first!r} must be a non-negative int (the number of "
                         "dense layers before the mixture-of-experts ones) or null")
    if not isinstance(n_layers, int) or first is None or first >= n_layers:
        return {"ffn": "swiglu"}
    get = {**DEFAULTS, **hf}.get
    if get("n_group") is None or get("topk_group") is None:
        raise ValueError(f"{source}: n_group and topk_group must be set for mixture-of-experts layers")
    scaling = number(hf, "routed_scaling_factor", DEFAULTS["routed_scaling_factor"], source)
    return dict(ffn="moe", first_dense_layers=first, dense_ffn="swiglu", expert_ffn="swiglu",
                n_experts=get("n_routed_experts"), n_shared_experts=get("n_shared_experts"),
                experts_per_token=get("num_experts_per_tok"), n_expert_groups=get("n_group"),
                groups_per_token=get("topk_group"), d_expert=get("moe_intermediate_size"),
                routed_scaling=scaling, normalize_gates=get("norm_topk_prob"))
