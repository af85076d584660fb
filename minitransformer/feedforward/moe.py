"""Stage 5 variant: a mixture of experts (IR concept: processing, by specialists).

A dense MLP processes every position with the same weights. A mixture of experts
keeps many MLPs (the experts) and sends each position to a few of them, chosen by
a router (Shazeer et al., 2017; here as in DeepSeek-V3, DeepSeek-AI, 2024, section
2.1.2, after DeepSeekMoE, Dai et al., 2024):

    y_t = sum_{i<S} FFN_shared_i(u_t) + sum_{i chosen for t} g_{i,t} FFN_i(u_t)

Every token goes through the S shared experts; the router (`moe_router`) picks K of
the E routed experts by ``sigmoid(u . e_i) + b_i`` and weighs them by gates that sum
to ``routed_scaling``. No token is dropped: an expert takes however many tokens
choose it. The block adds the residual (``x + y``), as for the dense MLPs.

    >>> from minitransformer.core.config import ModelConfig
    >>> cfg = ModelConfig.preset("toy", ffn="moe", n_experts=4, experts_per_token=2, d_expert=8)
    >>> params = init(cfg, np.random.default_rng(0))
    >>> params["W_router"].shape, params["W_in"].shape, params["W_in_shared"].shape
    ((32, 4), (4, 32, 8), (32, 8))
    >>> y, cache = forward(params, np.ones((2, 5, 32), np.float32), cfg)
    >>> y.shape, cache["hook_expert_ids"].shape, int(cache["hook_expert_load"].sum())   # 2*5 tokens x K
    ((2, 5, 32), (2, 5, 2), 20)

Two paths compute the same thing (``config.moe_impl`` or ``impl=``): ``"reference"``
loops over the experts with a mask of the tokens each one serves, like the
equation; ``"fast"`` sorts the (token, slot) assignments by expert, runs one matmul
per expert on a contiguous slice, and puts the results back in token order.

Parameters (role names; E experts, S shared, F_e expert width, SwiGLU experts):
``W_router (C, E)`` (column i is the centroid e_i), ``b_router (E,)``, the stacked
routed experts ``W_gate, W_in (E, C, F_e)`` and ``W_out (E, F_e, C)``, and the shared
experts as one MLP of width ``S * F_e``: ``W_gate_shared, W_in_shared (C, S F_e)``,
``W_out_shared (S F_e, C)`` (S experts side by side are one wider MLP). GELU experts
have no ``W_gate``. No biases (DeepSeek has none), whatever ``config.bias`` says.

note: ``b_router`` is model *state*, not a trained weight. It lives in ``params`` so
that checkpoints, ``named_parameters`` and the trace carry it, but `backward`
returns an exactly zero gradient for it, and AdamW leaves a zero-gradient 1-D array
bit for bit unchanged (moments stay 0, no weight decay on 1-D arrays). Only
`moe_router.update_bias`, called by the trainer after each optimizer step with the
load of the last forward, moves it.

Published in the cache (the trace prefixes ``blocks.{i}.mlp.``):
``hook_router_scores (B, T, E)`` the affinities s; ``hook_expert_ids (B, T, K)`` the
chosen experts, best first; ``hook_gates (B, T, K)`` their gates;
``hook_expert_load (E,)`` tokens per expert; ``hook_shared_out`` and
``hook_routed_out (B, T, C)``, the two sums of the equation (y is their sum); and,
with shared experts, ``hook_pre`` (SwiGLU: the gate), ``hook_pre_linear`` and
``hook_post (B, T, S F_e)`` of the shared MLP, which sees every token like a dense
MLP. The routed experts' hidden activations are kept for backward only (each
expert sees a different set of tokens). ``balance_loss`` (a float) is the
sequence-wise balance loss when ``config.balance_loss > 0``; its gradient is added
by `backward`, so backward returns the gradient of ``sum(y * dy) + balance_loss``.

Deliberately left out: capacity limits and token dropping, expert parallelism
(`minitransformer.scaleout` simulates its traffic), and the multi-token-prediction module.

Dimension letters: B batch, T time, N = B*T tokens, C width, E routed experts,
K experts per token, F_e expert width, R tokens one expert serves.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..core import nn
from . import moe_router

IMPLS = ("fast", "reference")

# The names this variant publishes (the trace prefixes ``blocks.{i}.mlp.``): (name, shape, meaning),
# in the form of the trace's hook table; hook_pre / hook_pre_linear / hook_post only with shared experts.
HOOK_ROWS = (
    ("hook_router_scores", "(B, T, E)", "router affinities s = sigmoid(u . e_i) of every routed expert"),
    ("hook_expert_ids", "(B, T, K)", "the K routed experts each token chose (by s + b), best first"),
    ("hook_gates", "(B, T, K)", "their gate values: s normalised over the chosen, times routed_scaling"),
    ("hook_expert_load", "(E,)", "tokens routed to each expert in this forward (what the bias update reads)"),
    ("hook_pre", "(B, T, S*Fe)", "shared experts' hidden pre-activation (SwiGLU: the gate)"),
    ("hook_pre_linear", "(B, T, S*Fe)", "shared experts' SwiGLU linear branch"),
    ("hook_post", "(B, T, S*Fe)", "shared experts' hidden activation, read by W_out_shared"),
    ("hook_shared_out", "(B, T, C)", "what the shared experts add"),
    ("hook_routed_out", "(B, T, C)", "what the routed experts add, gates applied"),
)


# --------------------------------------------------------------------------- parameters
def init(config, rng: np.random.Generator) -> dict:
    """Router ~ N(0, init_std), bias 0; experts like the dense MLP's weights (float32)."""
    if config.ffn != "moe":
        raise ValueError(f"moe.init needs a config with ffn='moe', got ffn={config.ffn!r}")
    C, E, Fe, S = config.d_model, config.n_experts, config.expert_width, config.n_shared_experts
    std = float(config.init_std)
    out_std = std / math.sqrt(2 * config.n_layers)  # as in the dense MLP: many writes into the stream
    gated = config.expert_ffn == "swiglu"
    params = {"W_router": rng.standard_normal((C, E), dtype=np.float32) * std,  # (C, E)
              "b_router": np.zeros(E, np.float32),  # (E,): state, moved by update_bias only
              "W_in": rng.standard_normal((E, C, Fe), dtype=np.float32) * std,  # (E, C, F_e)
              "W_out": rng.standard_normal((E, Fe, C), dtype=np.float32) * out_std}  # (E, F_e, C)
    if gated:
        params["W_gate"] = rng.standard_normal((E, C, Fe), dtype=np.float32) * std  # (E, C, F_e)
    if S:
        params["W_in_shared"] = rng.standard_normal((C, S * Fe), dtype=np.float32) * std  # (C, S F_e)
        params["W_out_shared"] = rng.standard_normal((S * Fe, C), dtype=np.float32) * out_std  # (S F_e, C)
        if gated:
            params["W_gate_shared"] = rng.standard_normal((C, S * Fe), dtype=np.float32) * std  # (C, S F_e)
    return params


def expert_size(config) -> int:
    """Parameters of one expert (SwiGLU: 3 C F_e; GELU: 2 C F_e)."""
    return (3 if config.expert_ffn == "swiglu" else 2) * config.d_model * config.expert_width


def flops_per_token(config, seq_len=None) -> int:
    """Forward FLOPs per token of one MoE layer (2 per multiply-add): the router's C·E scores and the
    K routed plus S shared experts the token passes through (sorting and gathering are not counted)."""
    experts = config.experts_per_token + config.n_shared_experts
    return 2 * (config.d_model * config.n_experts + experts * expert_size(config) // 1)


def inactive_params_per_token(config) -> int:
    """Parameters a token does not use: the E - K routed experts it skips, in every MoE layer."""
    if config.ffn != "moe":
        return 0
    moe_layers = config.n_layers - config.first_dense_layers
    return moe_layers * (config.n_experts - config.experts_per_token) * expert_size(config)


# --------------------------------------------------------------------------- one expert (an MLP on rows)
def _mlp_forward(x, W_in, W_out, W_gate=None):
    """``x (R, C) -> (R, C)``: SwiGLU when ``W_gate`` is given, else GELU; returns ``(y, saved)``."""
    if W_gate is not None:
        gate = x @ W_gate  # (R, C) @ (C, F) -> (R, F)
        up = x @ W_in  # (R, F)
        act, (_, sig) = nn.silu_forward(gate)
        post = act * up  # (R, F)
        saved = {"x": x, "pre": gate, "pre_linear": up, "sigmoid": sig, "post": post}
    else:
        pre = x @ W_in  # (R, F)
        post, (_, tanh) = nn.gelu_forward(pre)
        saved = {"x": x, "pre": pre, "tanh": tanh, "post": post}
    return post @ W_out, saved  # (R, F) @ (F, C) -> (R, C)


def _mlp_backward(dy, saved, W_in, W_out, W_gate=None):
    """Backward of `_mlp_forward`: ``(dx (R, C), dW_in, dW_out, dW_gate or None)``."""
    x, post = saved["x"], saved["post"]
    dW_out = post.T @ dy  # (F, R) @ (R, C) -> (F, C)
    dpost = dy @ W_out.T  # (R, C) @ (C, F) -> (R, F)
    dW_gate = None
    if W_gate is not None:
        gate, up, sig = saved["pre"], saved["pre_linear"], saved["sigmoid"]
        dgate = nn.silu_backward(dpost * up, (gate, sig))  # (R, F)
        dup = dpost * (gate * sig)  # times silu(gate)
        dW_gate = x.T @ dgate  # (C, R) @ (R, F) -> (C, F)
        dx = dgate @ W_gate.T + dup @ W_in.T  # x feeds both branches: (R, F) @ (F, C) -> (R, C), twice
    else:
        dup = nn.gelu_backward(dpost, (saved["pre"], saved["tanh"]))  # (R, F)
        dx = dup @ W_in.T  # (R, C)
    return dx, x.T @ dup, dW_out, dW_gate  # dW_in (C, F)


def _expert(params, e):
    """The weights of routed expert e: ``(W_in (C, F_e), W_out (F_e, C), W_gate or None)``."""
    return params["W_in"][e], params["W_out"][e], (params["W_gate"][e] if "W_gate" in params else None)


# --------------------------------------------------------------------------- routed experts: reference path
def _routed_reference(params, u, ids, gates, keep):
    """``y_t = sum_i g_{i,t} FFN_i(u_t)`` as a loop over experts with a mask of their tokens."""
    y = np.zeros_like(u)  # (N, C)
    for e in range(params["W_router"].shape[1]):
        hit = ids == e  # (N, K): which (token, slot) chose expert e
        rows = np.flatnonzero(hit.any(axis=1))  # the tokens expert e serves, (R,)
        if rows.size:
            g = (gates * hit).sum(axis=1)[rows]  # the gate of expert e for each of them, (R,)
            out, _ = _mlp_forward(u[rows], *_expert(params, e))  # (R, C)
            y[rows] += g[:, None] * out  # note: rows are distinct, so fancy-index += adds once each
    return y, ({"u": u} if keep else None)


def _routed_reference_backward(params, rc, ids, gates, dy):
    """Backward of `_routed_reference`; recomputes each expert's activations (the plainest code)."""
    u = rc["u"]
    du, dgates = np.zeros_like(u), np.zeros_like(gates)  # (N, C), (N, K)
    grads = {k: np.zeros_like(params[k]) for k in ("W_in", "W_out", "W_gate") if k in params}
    for e in range(params["W_router"].shape[1]):
        hit = ids == e  # (N, K)
        rows = np.flatnonzero(hit.any(axis=1))  # (R,)
        if not rows.size:
            continue
        g = (gates * hit).sum(axis=1)[rows]  # (R,)
        out, saved = _mlp_forward(u[rows], *_expert(params, e))  # recomputed, (R, C)
        # y = g * out: the gate's gradient is dy . out, the expert's is g * dy
        dgates[rows] += hit[rows] * (dy[rows] * out).sum(axis=-1, keepdims=True)  # (R, K)
        dx, dW_in, dW_out, dW_gate = _mlp_backward(g[:, None] * dy[rows], saved, *_expert(params, e))
        du[rows] += dx
        grads["W_in"][e], grads["W_out"][e] = dW_in, dW_out
        if dW_gate is not None:
            grads["W_gate"][e] = dW_gate
    return du, dgates, grads


# --------------------------------------------------------------------------- routed experts: fast path
def _routed_fast(params, u, ids, gates, keep):
    """The same sum with the assignments sorted by expert: one matmul chain per expert."""
    N, K = ids.shape
    E = params["W_router"].shape[1]
    flat = ids.reshape(-1)  # (N K,): the expert of each (token, slot), token-major
    order = np.argsort(flat, kind="stable")  # (N K,): assignments grouped by expert
    token = order // K  # (N K,): the token of each sorted assignment
    load = np.bincount(flat, minlength=E)  # (E,)
    bounds = np.concatenate([[0], np.cumsum(load)])  # expert e owns sorted rows bounds[e]:bounds[e+1]
    xs = u[token]  # (N, C) -> (N K, C): each expert's tokens now contiguous
    out = np.empty_like(xs)  # (N K, C): expert outputs, sorted order
    saved = []
    for e in np.flatnonzero(load):
        sl = slice(bounds[e], bounds[e + 1])
        out[sl], s = _mlp_forward(xs[sl], *_expert(params, e))  # (R, C)
        saved.append((e, sl, s))
    g = gates.reshape(-1)[order]  # (N K,): the gate of each sorted assignment
    back = np.empty_like(out)
    back[order] = out * g[:, None]  # scatter back to (token, slot) order, (N K, C)
    y = back.reshape(N, K, -1).sum(axis=1)  # each token's K contributions, (N, K, C) -> (N, C)
    return y, ({"order": order, "token": token, "gate_sorted": g, "out_sorted": out, "experts": saved}
               if keep else None)


def _routed_fast_backward(params, rc, ids, gates, dy):
    """Backward of `_routed_fast`, on the same sorted slices."""
    N, K = ids.shape
    order, token, g, out = rc["order"], rc["token"], rc["gate_sorted"], rc["out_sorted"]
    dys = dy[token]  # (N, C) -> (N K, C), sorted order
    dgates = np.empty(N * K, gates.dtype)
    dgates[order] = np.einsum("ic,ic->i", dys, out)  # dL/dg = dy . out, back in (token, slot) order
    dout = dys * g[:, None]  # (N K, C)
    dxs = np.empty_like(dout)  # (N K, C): every sorted row belongs to some expert's slice
    # note: np.empty, then zeros only for experts without tokens: zero-filling the whole
    # stack of expert gradients costs as much as the sort, gathers and scatters together
    grads = {k: np.empty_like(params[k]) for k in ("W_in", "W_out", "W_gate") if k in params}
    idle = np.setdiff1d(np.arange(len(params["W_in"])), [e for e, _, _ in rc["experts"]])
    for k in grads:
        grads[k][idle] = 0.0
    for e, sl, saved in rc["experts"]:
        dxs[sl], dW_in, dW_out, dW_gate = _mlp_backward(dout[sl], saved, *_expert(params, e))
        grads["W_in"][e], grads["W_out"][e] = dW_in, dW_out
        if dW_gate is not None:
            grads["W_gate"][e] = dW_gate
    back = np.empty_like(dxs)
    back[order] = dxs  # (N K, C), (token, slot) order
    return back.reshape(N, K, -1).sum(axis=1), dgates.reshape(N, K), grads  # (N, C)


_ROUTED = {"reference": (_routed_reference, _routed_reference_backward),
           "fast": (_routed_fast, _routed_fast_backward)}


# --------------------------------------------------------------------------- the stage
def forward(params: dict, x: np.ndarray, config, need_cache: Optional[bool] = None, impl: Optional[str] = None):
    """Shared plus routed experts: ``x (B, T, C) -> y (B, T, C)``, same dtype. Returns ``(y, cache)``.

    Args:
        impl: ``"fast"`` or ``"reference"`` (default ``config.moe_impl``); same results.
    """
    impl = config.moe_impl if impl is None else impl
    if impl not in _ROUTED:
        raise ValueError(f"impl={impl!r} is not a MoE path; choose one of {', '.join(map(repr, IMPLS))}")
    if "W_router" not in params:
        raise ValueError(f"these params (keys {sorted(params)}) are not a MoE layer's; build them with "
                         "moe.init(config, rng) for a config with ffn='moe'")
    C, E = params["W_router"].shape
    if x.ndim != 3 or x.shape[-1] != C:
        raise ValueError(f"x must be (B, T, C={C}), got shape {x.shape}")
    if E != config.n_experts:
        raise ValueError(f"the params have {E} experts but config.n_experts={config.n_experts}; use the config "
                         "they were built with")
    B, T, _ = x.shape
    keep = nn.want_cache(need_cache)
    u = x.reshape(B * T, C)  # (B, T, C) -> (N, C)
    s, ids, gates = moe_router.route(u, params["W_router"], params["b_router"], config)  # (N, E), (N, K), (N, K)
    y_routed, rc = _ROUTED[impl][0](params, u, ids, gates, keep)  # (N, C)
    y_shared, sc = np.zeros_like(u), None
    if "W_in_shared" in params:
        y_shared, sc = _mlp_forward(u, params["W_in_shared"], params["W_out_shared"], params.get("W_gate_shared"))
    y = (y_shared + y_routed).reshape(B, T, C)  # (N, C) -> (B, T, C)
    if not keep:
        return y, None
    K = ids.shape[1]
    cache = {"impl": impl, "x": x, "routed": rc, "shared": sc, "scaling": float(config.routed_scaling),
             "normalize": bool(config.normalize_gates), "alpha": float(config.balance_loss),
             "hook_router_scores": s.reshape(B, T, E), "hook_expert_ids": ids.reshape(B, T, K),
             "hook_gates": gates.reshape(B, T, K), "hook_expert_load": np.bincount(ids.reshape(-1), minlength=E),
             "hook_shared_out": y_shared.reshape(B, T, C), "hook_routed_out": y_routed.reshape(B, T, C)}
    if sc is not None:
        for name in ("pre", "pre_linear", "post"):
            if name in sc:
                cache["hook_" + name] = sc[name].reshape(B, T, -1)  # (N, S F_e) -> (B, T, S F_e)
    if cache["alpha"] > 0:
        cache["balance_loss"], cache["balance_f"] = moe_router.balance_loss(
            cache["hook_router_scores"], cache["hook_expert_ids"], cache["alpha"])
    return y, cache


def backward(params: dict, cache: dict, dy: np.ndarray):
    """Backward of `forward` (the expert choice held fixed). Returns ``(dx (B, T, C), grads)``.

    ``grads["b_router"]`` is zero: the bias only chooses, and the choice is a step function.
    With ``balance_loss`` in the cache, its gradient into the router is included.
    """
    if cache is None:
        raise ValueError("backward needs the cache of forward, but it is None: run forward with "
                         "need_cache=True (and outside nn.no_grad())")
    x = cache["x"]
    B, T, C = x.shape
    dy2 = dy.reshape(B * T, C)  # (N, C); never written into
    ids, gates = cache["hook_expert_ids"].reshape(B * T, -1), cache["hook_gates"].reshape(B * T, -1)  # (N, K)
    s = cache["hook_router_scores"].reshape(B * T, -1)  # (N, E)
    du, dgates, grads = _ROUTED[cache["impl"]][1](params, cache["routed"], ids, gates, dy2)
    if cache["shared"] is not None:
        dx_s, grads["W_in_shared"], grads["W_out_shared"], dW_gate = _mlp_backward(
            dy2, cache["shared"], params["W_in_shared"], params["W_out_shared"], params.get("W_gate_shared"))
        du += dx_s
        if dW_gate is not None:
            grads["W_gate_shared"] = dW_gate
    ds = moe_router.gates_backward(dgates, s, ids, gates, cache["scaling"], cache["normalize"])  # (N, E)
    if cache["alpha"] > 0:
        ds += moe_router.balance_loss_backward(cache["hook_router_scores"], cache["balance_f"],
                                               cache["alpha"]).reshape(B * T, -1)
    du_router, grads["W_router"] = moe_router.scores_backward(ds, s, x.reshape(B * T, C), params["W_router"])
    du += du_router  # the router reads u too
    grads["b_router"] = np.zeros_like(params["b_router"])
    return du.reshape(B, T, C), grads


def expert_loads(cache: dict) -> list:
    """``[load (E,) or None per block]`` from a model forward cache (None for dense blocks)."""
    return [b["mlp"].get("hook_expert_load") if b["mlp"] is not None else None for b in cache["blocks"]]


def load_imbalance(loads: list) -> np.ndarray:
    """``max / mean`` of each MoE block's expert load (`expert_loads`; dense blocks skipped).

    1 is a perfectly even load; E / K means every token chose the same K experts (collapse).

    >>> load_imbalance([None, np.array([4, 0, 2, 2])])
    array([2.])
    """
    return np.array([load.max() / load.mean() for load in loads if load is not None], dtype=np.float64)


def dense_equivalent(config):
    """A dense SwiGLU config with the MoE's active expert parameters per token: width ``(K + S) F_e``.

    Same sizes otherwise; the router's ``C E`` weights are the only active difference.
    """
    width = (config.experts_per_token + config.n_shared_experts) * config.expert_width
    return config.dense_layer_config().replace(ffn="swiglu", d_ff=width)


def add_loads(total: Optional[list], loads: list) -> list:
    """Sum the per-block expert loads of the micro-batches of one step (None: a dense block)."""
    if total is None:
        return list(loads)
    return [None if a is None else a + b for a, b in zip(total, loads)]


def balance_routers(params: dict, loads: Optional[list], config) -> None:
    """`moe_router.update_bias` on every MoE block of a model's params, with that block's load.

    Does nothing for a dense model (every load None) or with ``config.balance_speed == 0``.
    """
    gamma = float(getattr(config, "balance_speed", 0.0))
    for block, load in zip(params["blocks"], loads or []):
        if load is not None and gamma > 0:
            moe_router.update_bias(block["mlp"], load, gamma)


update_bias = moe_router.update_bias  # the name the course uses
