"""Figures for the scale-out notebook: one matplotlib ``Figure`` per experiment.

As in ``minitransformer.figures``, each function takes numbers the simulator already
computed (a topology, per-link loads, completion times, a speed-up curve) and
returns a ``matplotlib.figure.Figure`` built without ``pyplot``: nothing global,
nothing pops up, a notebook shows the figure when it is a cell's value.

Left out: interactive views and drawing topologies larger than a few dozen GPUs
(a 16,384-GPU picture is a grey square).

    >>> fig = grouped_bars({"ring": {"ecmp": 4.0, "spray": 1.0}}, ylabel="time / ideal")
    >>> type(fig).__name__
    'Figure'
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

FIGSIZE = (6.5, 3.6)
PLANE_COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"]


def topology(topo, title: str | None = None) -> Figure:
    """Draw a small two-layer fabric: spines on top, leaves, then GPUs grouped in nodes; one colour per plane.

    Lines are cables (NIC to leaf, leaf to spine); a grey box is a node, whose GPUs
    talk over NVLink. Meant for k <= 8 and a few nodes.
    """
    if topo.n_gpus > 256:
        raise ValueError(f"{topo.n_gpus} GPUs are too many to draw; build a small topology (k <= 8, few nodes)")
    G, S = topo.gpus_per_node, topo.n_spines
    fig = Figure(figsize=(max(6.5, 0.28 * topo.n_gpus + 1), 4.2), layout="constrained")
    ax = fig.add_subplot()
    gx = np.arange(topo.n_gpus) + (np.arange(topo.n_gpus) // G) * 0.6  # a gap between nodes
    leaf_x = np.array([gx[topo.port_gpu[topo.port_leaf == l]].mean() for l in range(topo.n_leaves)])
    spine_x = np.zeros((topo.planes, S))
    for p in range(topo.planes):
        lo, hi = leaf_x[topo.leaf_plane == p].min(), leaf_x[topo.leaf_plane == p].max()
        spine_x[p] = np.linspace(lo, hi, S) if S > 1 else (lo + hi) / 2
    y_gpu, y_leaf = 0.0, 1.0
    y_spine = 2.0 + 0.25 * np.arange(topo.planes)  # planes stacked a little apart
    for q in range(topo.n_ports):  # NIC cables
        c = PLANE_COLOURS[topo.port_plane[q] % len(PLANE_COLOURS)]
        ax.plot([gx[topo.port_gpu[q]], leaf_x[topo.port_leaf[q]]], [y_gpu, y_leaf], color=c, lw=0.6, alpha=0.6)
    for l in range(topo.n_leaves):  # leaf -> spine cables
        p = topo.leaf_plane[l]
        for s in range(S):
            ax.plot([leaf_x[l], spine_x[p, s]], [y_leaf, y_spine[p]], color=PLANE_COLOURS[p % 8], lw=0.5,
                    alpha=0.5 if topo.spine_alive[p, s] else 0.08)
    for n in range(topo.nodes):  # node boxes
        x0, x1 = gx[n * G] - 0.4, gx[n * G + G - 1] + 0.4
        ax.fill_between([x0, x1], -0.12, 0.12, color="0.88", zorder=0)
        ax.text((x0 + x1) / 2, -0.25, f"node {n}", ha="center", fontsize=7)
    colours = [PLANE_COLOURS[p % 8] for p in topo.gpu_plane()]
    ax.scatter(gx, np.full(topo.n_gpus, y_gpu), s=25, c=colours, zorder=3, marker="s")
    ax.scatter(leaf_x, np.full(topo.n_leaves, y_leaf), s=60, c=[PLANE_COLOURS[p % 8] for p in topo.leaf_plane],
               zorder=3, marker="D")
    for p in range(topo.planes):
        alive = topo.spine_alive[p]
        ax.scatter(spine_x[p][alive], np.full(alive.sum(), y_spine[p]), s=60, c=PLANE_COLOURS[p % 8], zorder=3)
        ax.scatter(spine_x[p][~alive], np.full((~alive).sum(), y_spine[p]), s=80, c="k", marker="x", zorder=3)
    ax.set_yticks([y_gpu, y_leaf, y_spine.mean()], ["GPUs + NICs", "leaves", "spines"])
    ax.set_xticks([])
    ax.spines[["top", "right", "bottom"]].set_visible(False)
    ax.set_title(title or repr(topo).replace("Topology(", "").rstrip(")"), fontsize=9)
    return fig


def grouped_bars(data: dict, ylabel: str, title: str = "", reference: float | None = None, log: bool = False) -> Figure:
    """Bars for ``{group: {label: value}}`` (e.g. traffic pattern -> routing policy -> time / ideal)."""
    groups = list(data)
    labels = list(dict.fromkeys(lbl for g in groups for lbl in data[g]))
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(labels)
    for j, lbl in enumerate(labels):
        xs = np.arange(len(groups)) + (j - (len(labels) - 1) / 2) * width
        vals = [data[g].get(lbl, np.nan) for g in groups]
        bars = ax.bar(xs, vals, width, label=lbl, color=PLANE_COLOURS[j % 8])
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    if reference is not None:
        ax.axhline(reference, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(groups)), groups)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def uplink_profiles(loads: dict, title: str = "leaf -> spine uplinks, busiest first") -> Figure:
    """Each policy's uplink loads, sorted, relative to the mean over used uplinks (1 = perfectly even)."""
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    for j, (label, up) in enumerate(loads.items()):
        up = np.sort(np.asarray(up).ravel())[::-1]
        used = up[: max(1, int((up > 0).sum()))]
        ax.plot(np.arange(len(used)), used / used.mean(), label=label, color=PLANE_COLOURS[j % 8], lw=1.2)
    ax.axhline(1.0, color="k", lw=0.6, ls=":")
    ax.set_xlabel("uplink (sorted by load)")
    ax.set_ylabel("load / mean load")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def bytes_per_token(curves: dict, title: str = "network copies per token vs node limit M") -> Figure:
    """Network copies of a token (bytes / hidden) as M varies, from ``metrics.ib_bytes_per_token``."""
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    M = curves["M"]
    names = {"per_expert": "one copy per remote expert (8t)", "direct": "one per remote GPU",
             "dedup": "one per remote node (≤ Mt)"}
    for j, key in enumerate(["per_expert", "direct", "dedup"]):
        ax.plot(M, curves[key], "o-", label=names[key], color=PLANE_COLOURS[j])
    ax.plot(M, M, "k:", lw=0.8, label="M (the bound)")
    ax.set_xlabel("M, the most nodes a token may reach")
    ax.set_ylabel("network copies per token")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    return fig


def failure(before, after, title: str = "a failed spine: busiest link in each plane (red: changed)") -> Figure:
    """Per-plane busiest link time before and after a failure (``metrics.failure_experiment``), in ms."""
    before, after = np.asarray(before) * 1e3, np.asarray(after) * 1e3
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(before))
    ax.bar(x - 0.2, before, 0.4, label="before", color="#94a3b8")
    ax.bar(x + 0.2, after, 0.4, label="after", color=["#dc2626" if a > b * 1.0001 else "#2563eb"
                                                        for a, b in zip(after, before)])
    ax.set_xticks(x, [f"plane {p}" for p in x], fontsize=8)
    ax.set_ylabel("busiest link (ms)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


def speedup(curve: dict, title: str = "legacy (one faster device) vs scale-out (many devices)") -> Figure:
    """Speed-up against device count from ``model_traffic.speedup_curve`` (log-log), with the ideal line."""
    n = curve["devices"]
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(n, n, "k:", lw=0.8, label="ideal (no communication)")
    ax.plot(n, curve["scale_out"], "o-", color=PLANE_COLOURS[0], label="scale-out, simulated all-reduce")
    if "scale_out_overlap" in curve:
        ax.plot(n, curve["scale_out_overlap"], "s--", color=PLANE_COLOURS[2], label="scale-out, overlapped")
    ax.plot(n, curve["legacy"], color=PLANE_COLOURS[1], lw=2, label="legacy: one device, faster")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("devices")
    ax.set_ylabel("speed-up over one device")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig
