"""The interpretability lab's figures (`minitransformer.lab`), as matplotlib ``Figure`` objects.

Signed quantities (patching effects, attributions) use a diverging map centred on zero
(``RdBu``: blue for positive, red for negative, white for zero; the bars use the same colours); scores in [0, 1] use
``viridis``.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

DIVERGING = "RdBu"
SEQUENTIAL = "viridis"


def _signed_limits(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def layer_position_map(values: np.ndarray, labels: Optional[Sequence[str]] = None, title: str = "",
                       colorbar: str = "metric") -> Figure:
    """(L, T) values (e.g. `patching.patch_residual`) as a layers x positions heatmap, diverging around 0."""
    values = np.asarray(values, np.float64)
    L, T = values.shape
    fig = Figure(figsize=(max(4.0, 0.55 * T + 2), 0.45 * L + 1.8))
    ax = fig.add_subplot()
    lim = _signed_limits(values)
    im = ax.imshow(values, cmap=DIVERGING, vmin=-lim, vmax=lim, aspect="auto")
    ax.set_yticks(range(L), [f"layer {i}" for i in range(L)])
    ax.set_xticks(range(T), list(labels) if labels is not None else range(T), rotation=60, ha="right")
    ax.set_xlabel("position")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=colorbar)
    fig.tight_layout()
    return fig


def layer_head_map(values: np.ndarray, title: str = "", colorbar: str = "metric", signed: bool = True) -> Figure:
    """(L, H) values (patching, attribution, detector scores) as a layers x heads heatmap, with the numbers."""
    values = np.asarray(values, np.float64)
    L, H = values.shape
    fig = Figure(figsize=(0.7 * H + 2.4, 0.5 * L + 1.6))
    ax = fig.add_subplot()
    if signed:
        lim = _signed_limits(values)
        im = ax.imshow(values, cmap=DIVERGING, vmin=-lim, vmax=lim)
    else:
        im = ax.imshow(values, cmap=SEQUENTIAL, vmin=0.0, vmax=max(1.0, float(np.nanmax(values))))
    for i in range(L):
        for h in range(H):
            if np.isfinite(values[i, h]):
                ax.text(h, i, f"{values[i, h]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if signed else "white")
    ax.set_xticks(range(H), [f"H{h}" for h in range(H)])
    ax.set_yticks(range(L), [f"L{i}" for i in range(L)])
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=colorbar)
    fig.tight_layout()
    return fig


def attribution_vs_patching(estimate: np.ndarray, actual: np.ndarray, title: str = "") -> Figure:
    """Scatter of attribution-patching estimates against real patching effects, with the line y = x."""
    x, y = np.ravel(actual), np.ravel(estimate)
    fig = Figure(figsize=(4.2, 4.0))
    ax = fig.add_subplot()
    ax.scatter(x, y, s=14, c="tab:blue")
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", linewidth=1, linestyle="--", label="estimate = actual")
    ax.set_xlabel("activation patching: change of the metric")
    ax.set_ylabel("attribution patching: linear estimate")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def logit_attribution_bars(labels: Sequence[str], values: np.ndarray, k: int = 15, title: str = "") -> Figure:
    """The ``k`` components with the largest direct contribution (by size), as horizontal bars."""
    values = np.asarray(values, np.float64)
    order = np.argsort(-np.abs(values), kind="stable")[:k][::-1]
    fig = Figure(figsize=(5.0, 0.28 * len(order) + 1.2))
    ax = fig.add_subplot()
    colors = ["tab:blue" if values[i] > 0 else "tab:red" for i in order]  # as RdBu: blue positive
    ax.barh(range(len(order)), values[order], color=colors)
    ax.set_yticks(range(len(order)), [labels[i] for i in order])
    ax.axvline(0.0, color="gray", linewidth=0.8)
    ax.set_xlabel("direct contribution to the logit (difference)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def induction_over_training(run, title: str = "induction heads form") -> Figure:
    """Two panels over training steps: head scores, and the loss on each half; the phase change marked.

    ``run`` is what `minitransformer.lab.induction.train_induction` returns.
    """
    a = run.as_arrays()
    fig = Figure(figsize=(8.0, 3.2))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(a["steps"], a["induction"], label="induction (best layer-1 head)", color="tab:purple")
    ax1.plot(a["steps"], a["previous_token"], label="previous token (best layer-0 head)", color="tab:green")
    ax1.set_ylim(0, 1)
    ax1.set_xlabel("training step")
    ax1.set_ylabel("score")
    ax2.plot(a["steps"], a["loss_first"], label="first half (random)", color="tab:gray")
    ax2.plot(a["steps"], a["loss_second"], label="second half (repeats)", color="tab:orange")
    ax2.set_xlabel("training step")
    ax2.set_ylabel("loss (nats/token)")
    step = run.phase_change()
    for ax in (ax1, ax2):
        ax.axvline(step, color="black", linestyle=":", linewidth=1)
        ax.legend(fontsize=7)
    ax1.set_title(f"{title}: phase change at step {step}", fontsize=9)
    fig.tight_layout()
    return fig


def head_pattern(pattern: np.ndarray, labels: Optional[Sequence[str]] = None, title: str = "") -> Figure:
    """One head's pattern (T, T), queries down, keys across (viridis)."""
    pattern = np.asarray(pattern)
    T = pattern.shape[0]
    fig = Figure(figsize=(0.3 * T + 2, 0.3 * T + 1.5))
    ax = fig.add_subplot()
    im = ax.imshow(pattern, cmap=SEQUENTIAL, vmin=0, vmax=1)
    ticks = list(labels) if labels is not None else list(range(T))
    ax.set_xticks(range(T), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(T), ticks, fontsize=7)
    ax.set_xlabel("key")
    ax.set_ylabel("query")
    ax.set_title(title)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig
