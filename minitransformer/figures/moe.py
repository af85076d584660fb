"""Figures of the mixture of experts: load balance, the routing map, dense against MoE, and its traffic.

Each function takes numbers already computed (a training run's loads, a forward
cache, a `kit.compare` result, `scaleout.real_routing` reports) and returns a
`matplotlib.figure.Figure`.

    >>> fig = load_balance({"no bias": np.full((5, 1), 8.0), "bias": np.linspace(8, 1.2, 5)[:, None]}, 16, 2)
    >>> len(fig.axes)
    1
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..costs import estimate_flops_per_token
from .style import FIGSIZE, visible


def _smooth(y: np.ndarray, width: int) -> np.ndarray:
    if width <= 1 or len(y) < width:
        return y
    kernel = np.ones(width) / width
    return np.convolve(y, kernel, mode="valid")  # (S,) -> (S - width + 1,)


def load_balance(histories: dict, n_experts: int, experts_per_token: int, smooth: int = 1,
                 title: str = "expert load during training") -> Figure:
    """``max / mean`` expert load per step, one line per run.

    Args:
        histories: ``{label: (steps, layers) array}`` of `moe.load_imbalance` after each step;
            the line is the mean over the MoE layers.
        smooth: a moving average over this many steps (1: none).
    """
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for label, h in histories.items():
        y = _smooth(np.asarray(h, np.float64).reshape(len(h), -1).mean(axis=1), smooth)
        ax.plot(np.arange(len(y)) + (smooth if len(h) >= smooth > 1 else 1), y, lw=1.2, label=label)
    ax.axhline(1.0, ls="--", color="gray", lw=1, label="even load (1)")
    ax.axhline(n_experts / experts_per_token, ls=":", color="C3", lw=1,
               label=f"collapse: all tokens on K experts (E/K = {n_experts / experts_per_token:g})")
    ax.set_xlabel("training step")
    ax.set_ylabel("max / mean tokens per expert")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def routing_matrix(expert_ids: np.ndarray, gates: np.ndarray, n_experts: int) -> np.ndarray:
    """``(T, E)`` gate of each token for each expert, 0 where the expert was not chosen.

    ``expert_ids, gates (T, K)``: one sequence's ``hook_expert_ids`` and ``hook_gates``.

        >>> routing_matrix(np.array([[2, 0]]), np.array([[0.7, 0.3]]), 3).tolist()
        [[0.3, 0.0, 0.7]]
    """
    out = np.zeros((len(expert_ids), n_experts))  # (T, E)
    np.put_along_axis(out, np.asarray(expert_ids), np.asarray(gates, np.float64), axis=1)
    return out


def routing_map(expert_ids: np.ndarray, gates: np.ndarray, labels: list, n_experts: int,
                title: str = "which experts process each token") -> Figure:
    """Tokens (rows) x routed experts (columns), coloured by the gate; ``(T, K)`` ids and gates."""
    m = routing_matrix(expert_ids, gates, n_experts)  # (T, E)
    fig = Figure(figsize=(max(4.0, 0.3 * n_experts + 2), max(3.0, 0.22 * len(labels) + 1.2)))
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues", aspect="auto", vmin=0)
    ax.set_yticks(range(len(labels)), [visible(t) for t in labels], fontsize=7)
    ax.set_xticks(range(n_experts), [str(e) for e in range(n_experts)], fontsize=7)
    ax.set_xlabel("routed expert")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="gate")
    fig.tight_layout()
    return fig


def dense_vs_moe(result, tokens_per_step: int, title: str = "dense vs MoE at equal active parameters") -> Figure:
    """Validation loss against steps (left) and against training FLOPs (right) of a `kit.compare` result.

    Training FLOPs are ``3 x estimate_flops_per_token(config) x tokens`` (forward plus a
    backward of about twice its cost); a MoE pays only for its active experts.
    """
    fig = Figure(figsize=(9, 3.5))
    ax, bx = fig.subplots(1, 2, sharey=True)
    for name, run in result.runs.items():
        if not run.evals:
            continue
        steps, values = map(np.asarray, zip(*run.evals))
        flops = 3.0 * estimate_flops_per_token(run.config) * tokens_per_step * steps
        ax.plot(steps, values, "o-", ms=3, label=f"{name} ({run.num_params:,} params)")
        bx.plot(flops, values, "o-", ms=3, label=name)
    for a in (ax, bx):
        a.axhline(result.baseline, ls="--", color="gray", lw=1, label="unigram baseline" if a is ax else None)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (nats/token)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    bx.set_xlabel("training FLOPs (3 x forward, estimated)")
    bx.set_title("the same runs, by compute", fontsize=10)
    fig.tight_layout()
    return fig


def routed_traffic(reports: dict, title: str = "one MoE layer's dispatch on real routing") -> Figure:
    """Network copies per token (left) and dispatch + combine time (right) of `real_routing.dispatch_report`s.

    ``reports``: ``{label: report}``, e.g. with and without node-limited routing.
    """
    fig = Figure(figsize=(9, 3.5))
    ax, bx = fig.subplots(1, 2)
    labels = list(reports)
    x = np.arange(len(labels))
    per_expert = [reports[k]["copies_per_token"]["per_expert"] for k in labels]
    dedup = [reports[k]["copies_per_token"]["dedup"] for k in labels]
    ax.bar(x - 0.2, per_expert, 0.4, label="one copy per remote expert")
    ax.bar(x + 0.2, dedup, 0.4, label="one copy per remote node (dedup)")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.4 * max(per_expert + dedup))  # room for the legend
    ax.set_ylabel("network copies per token")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    mp = [reports[k]["mpft_s"] * 1e6 for k in labels]
    sp = [reports[k]["single_plane_s"] * 1e6 for k in labels]
    bx.bar(x - 0.2, mp, 0.4, label="multi-plane (MPFT)")
    bx.bar(x + 0.2, sp, 0.4, label="one plane (MRFT)")
    bx.set_xticks(x, labels, fontsize=8)
    bx.set_ylim(0, 1.4 * max(mp + sp))
    bx.set_ylabel("dispatch + combine (µs)")
    bx.legend(fontsize=7)
    fig.tight_layout()
    return fig
