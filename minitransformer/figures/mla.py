"""Figures for Multi-Head Latent Attention: cache size, decode time, training curves, the latent index.

Like the other figure modules (`figures.stages`), every function takes numbers already computed (by `mla_accounting`,
a benchmark, a `Trainer`, a forward cache) and returns a
`matplotlib.figure.Figure` built without ``pyplot``; a notebook shows it when it
is the value of a cell.

    >>> from minitransformer.attention.mla_accounting import DEEPSEEK_V3
    >>> fig = kv_cache_vs_context([DEEPSEEK_V3], [1024, 4096, 32768])
    >>> type(fig).__name__, len(fig.axes)
    ('Figure', 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..attention import mla_accounting

COLOURS = {"MHA": "tab:red", "GQA": "tab:orange", "MQA": "tab:green", "MLA": "tab:blue",
           "MLA naive": "tab:purple", "MLA absorbed": "tab:blue"}


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n} TB"


def kv_cache_vs_context(sizes_list: Sequence, contexts, bytes_per_element: float = 2, batch: int = 1,
                        title: str = "KV-cache bytes per sequence against context length") -> Figure:
    """One panel per `mla_accounting.AttentionSizes`: the whole cache (all layers) for MHA, GQA, MQA, MLA.

    Log-log axes: every mechanism is a straight line of slope 1 (the cache grows linearly with
    the context); the vertical gaps are the constant ratios of bytes per token. The label at the
    right end gives the cache at the longest context.
    """
    contexts = np.asarray(list(contexts), dtype=float)
    fig = Figure(figsize=(5.2 * len(sizes_list), 3.6), layout="constrained")
    axes = fig.subplots(1, len(sizes_list), squeeze=False)[0]
    for ax, sizes in zip(axes, sizes_list):
        for m in mla_accounting.MECHANISMS:
            label = m.upper()
            per_token = mla_accounting.kv_bytes_per_token(sizes, m, bytes_per_element)
            y = per_token * contexts * batch
            name = f"GQA ({sizes.n_kv_heads} groups)" if m == "gqa" else label
            ax.plot(contexts, y, marker="o", ms=3, color=COLOURS[label],
                    label=f"{name}: {_human_bytes(per_token)}/token → {_human_bytes(y[-1])}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens)")
        ax.set_ylabel(f"cache bytes ({bytes_per_element:g} B/element)")
        ax.set_title(sizes.name, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=11)
    return fig


def decode_time_vs_context(times: Mapping, title: str = "decode time per token against context length") -> Figure:
    """``times = {label: (contexts, milliseconds)}``, measured: one line per decode path, log-log axes."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    for label, (ctx, ms) in times.items():
        ax.plot(ctx, ms, marker="o", label=label, color=COLOURS.get(label))
        ax.annotate(f"{ms[-1]:.2g} ms", (ctx[-1], ms[-1]), textcoords="offset points", xytext=(4, 0), fontsize=8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tokens already in the cache")
    ax.set_ylabel("ms per decoded token (median)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def loss_curves(runs: Mapping, title: str = "training loss") -> Figure:
    """``runs = {label: [(step, loss), ...]}`` (e.g. ``trainer.state.losses``), raw and smoothed."""
    fig = Figure(figsize=(6, 3.6), layout="constrained")
    ax = fig.subplots()
    for k, (label, points) in enumerate(runs.items()):
        steps, losses = np.array(points, dtype=float).T
        colour = f"C{k}"
        ax.plot(steps, losses, color=colour, alpha=0.25, lw=1)
        w = max(1, len(losses) // 15)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1:], smooth, color=colour, lw=2, label=f"{label} (last {smooth[-1]:.2f})")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def cache_contents(c_kv, k_r, labels: Sequence[str], title: str = "what the latent cache holds") -> Figure:
    """The latent index of one sequence: c_KV (T, Dc) and the rotated shared key k_R (T, Dr), one row per token."""
    c_kv, k_r = np.asarray(c_kv), np.asarray(k_r)
    widths = [c_kv.shape[1], max(k_r.shape[1], 1)]
    fig = Figure(figsize=(6.5, 0.25 * len(labels) + 1.4), layout="constrained")
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": widths})
    for ax, data, name in zip(axes, (c_kv, k_r), ("c_KV (latent, RMS-normalised)", "k_R (rotated)")):
        lim = float(np.abs(data).max()) if data.size else 1.0
        ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("dimension")
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels if ax is axes[0] else [], fontsize=7)
    fig.suptitle(title, fontsize=11)
    return fig
