"""Figures of stage 1, tokenization: merge trees, compression, merge counts.

    >>> fig = merge_counts([50, 20, 9, 4])
    >>> type(fig).__name__
    'Figure'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from .style import FIGSIZE, visible


# ---------------------------------------------------------------------- tokenization (stage 1)
def merge_tree(tree: dict, title: str | None = None) -> Figure:
    """Draw how a token was built, from ``tokenizer.show.merge_tree(tok, id)``.

    The root (the whole token) is at the top and its bytes are the leaves along
    the bottom, in reading order. A node's height is the number of merge levels
    between it and its deepest byte, so tokens built from merged tokens sit higher.

    Args:
        tree: nested ``{"id", "token", "children": [left, right]}`` (leaves have no children).
        title: figure title; defaults to the root token.
    """
    labels: list[tuple[float, int, dict]] = []  # (x, height, node) for every box to draw
    elbows: list[tuple[float, int, float, int]] = []  # (child x, child height, parent x, parent height)
    n_leaves = 0

    def place(node: dict) -> tuple[float, int]:
        # note: a dendrogram layout: leaves get x = 0, 1, 2, ... in reading order; a
        # parent sits above the middle of its children, one level above the taller one.
        nonlocal n_leaves
        if not node["children"]:
            x, h = float(n_leaves), 0
            n_leaves += 1
        else:
            kids = [place(child) for child in node["children"]]
            x, h = sum(kx for kx, _ in kids) / len(kids), 1 + max(kh for _, kh in kids)
            elbows.extend((kx, kh, x, h) for kx, kh in kids)
        labels.append((x, h, node))
        return x, h

    _, height = place(tree)
    width = max(FIGSIZE[0], 0.55 * n_leaves)  # room for one label per byte
    fig = Figure(figsize=(width, max(2.5, 0.8 * (height + 1))), layout="constrained")
    ax = fig.add_subplot()

    for cx, ch, px, ph in elbows:  # elbow connectors, drawn under the boxes
        ax.plot([cx, cx, px], [ch, ph, ph], color="0.6", linewidth=1, zorder=1)
    for x, h, node in labels:  # one box per token: its text (spaces as ␣) and its id
        leaf = not node["children"]
        ax.text(
            x, h, f"{visible(node['token'])}\n{node['id']}",
            ha="center", va="center", fontsize=8, family="monospace", zorder=2,
            bbox=dict(boxstyle="round,pad=0.25", facecolor="#dbeafe" if leaf else "#fef9c3", edgecolor="0.5"),
        )

    ax.set_xlim(-0.7, n_leaves - 0.3)
    ax.set_ylim(-0.6, height + 0.6)
    ax.set_yticks(range(height + 1))
    ax.set_ylabel("levels of merges")
    ax.set_xticks([])
    ax.spines[["top", "right", "bottom"]].set_visible(False)
    ax.set_title(title or f"merge tree of [{visible(tree['token'])}] (id {tree['id']})")
    return fig


def _as_series(data, name: str) -> dict:
    """Accept one series or ``{label: series}``: plotting one tokenizer or comparing several."""
    if isinstance(data, Mapping):
        return {label: list(series) for label, series in data.items()}
    if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
        raise ValueError(f"{name} must be a list (or array) or a dict {{label: list}}, got {type(data).__name__}")
    return {None: list(data)}  # one unlabelled series (a list, tuple or numpy array)


def compression_curve(rows, title: str = "compression vs vocabulary size") -> Figure:
    """Bytes per token against vocabulary size, from ``tokenizer.show.compression_curve``.

    Args:
        rows: a list of rows (dicts with ``vocab_size`` and ``bytes_per_token``),
            or ``{label: rows}`` to compare several tokenizers (e.g. split patterns).
    """
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    for label, series in _as_series(rows, "rows").items():
        ax.plot([r["vocab_size"] for r in series], [r["bytes_per_token"] for r in series], marker="o", label=label)
    # note: every doubling of the vocabulary costs the same (the embedding table
    # doubles), so a log2 axis shows what each doubling buys.
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())  # 1024, not 2^10
    ax.set_xlabel("vocabulary size (256 bytes + merges)")
    ax.set_ylabel("bytes per token (higher = shorter sequences)")
    ax.grid(True, alpha=0.3)
    if isinstance(rows, Mapping):
        ax.legend()
    ax.set_title(title)
    return fig


def merge_counts(counts, title: str = "how often each merge's pair occurred when it was learned") -> Figure:
    """The count of each merge against its rank, on log-log axes (``TrainResult.counts``).

    The first merges glue pairs seen thousands of times; the last ones, pairs seen
    a handful of times. A straight line on log-log axes is a power law (Zipf), and
    it is why compression grows ever more slowly with vocabulary size.

    Args:
        counts: one list of counts in rank order, or ``{label: counts}``.
    """
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    for label, series in _as_series(counts, "counts").items():
        ax.plot(range(1, len(series) + 1), series, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("merge rank (1 = learned first)")
    ax.set_ylabel("pair count when merged")
    ax.grid(True, which="both", alpha=0.3)
    if isinstance(counts, Mapping):
        ax.legend()
    ax.set_title(title)
    return fig
