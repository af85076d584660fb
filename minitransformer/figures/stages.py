"""Figures of the pipeline's stages: tokens, embeddings, positions, attention, MLPs, sampling.

Each function takes data that the pipeline has already computed (a merge tree
from `tokenizer.show.merge_tree`, rows from `tokenizer.show.compression_curve`,
the counts a trainer reported) and returns a `matplotlib.figure.Figure`. Nothing
here computes the model's numbers a second time, trains, or touches the network:
a figure can only show what the code really did.

Figures are built with `matplotlib.figure.Figure` directly, not with `pyplot`, so
that no global figure list grows, nothing pops up from a script, and a notebook
shows a figure exactly once: when it is the value of a cell (with the inline
backend, ``%matplotlib inline``) or passed to ``display``. Save one with
``fig.savefig("merge_tree.png")``.

"""

from __future__ import annotations

from collections.abc import Mapping

from matplotlib.figure import Figure
import numpy as np

from .. import positional
from ..concepts import STAGES
from ..feedforward.output import probabilities
from .style import FIGSIZE, visible


# ---------------------------------------------------------------------- the pipeline (stages 1-5)
def token_boundaries(labels: list, ids: list, title: str = "tokens") -> Figure:
    """The text as a row of coloured boxes, one per token, with its id underneath."""
    fig = Figure(figsize=(min(12, 1 + 0.7 * len(labels)), 1.6))
    ax = fig.add_subplot()
    colours = ["#fde2e4", "#dbeafe", "#dcfce7", "#fef9c3", "#ede9fe", "#ffedd5"]
    for t, (label, i) in enumerate(zip(labels, ids)):
        ax.add_patch(_box(t, colours[t % len(colours)]))
        ax.text(t + 0.5, 0.62, visible(label).replace("\n", "\\n"), ha="center", va="center", fontsize=9,
                family="monospace")
        ax.text(t + 0.5, 0.18, str(i), ha="center", va="center", fontsize=7, color="#555")
    ax.set_xlim(0, max(len(labels), 1))
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title(title)
    return fig


def _box(x, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((x + 0.04, 0.02), 0.92, 0.96, facecolor=colour, edgecolor="#999")


def embedding_map(W_E, highlight_ids: list, vocab_labels: list, n_background: int = 400,
                  title: str = "embedding rows, first two principal components") -> Figure:
    """``W_E`` projected to 2-D by PCA: the tokens of a text highlighted among a sample of the vocabulary."""
    import numpy as np

    X = W_E - W_E.mean(axis=0)  # (V, C), centred
    _, _, Vt = np.linalg.svd(X, full_matrices=False)  # principal directions
    P = X @ Vt[:2].T  # (V, 2)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    step = max(1, len(P) // n_background)
    ax.scatter(P[::step, 0], P[::step, 1], s=4, color="#bbb", label="other tokens")
    for i in dict.fromkeys(highlight_ids):
        ax.scatter(P[i, 0], P[i, 1], s=18, color="C0")
        ax.annotate(visible(vocab_labels[i]), P[i], fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def positional_heatmap(config, n_positions: int, W_pos=None, title: str | None = None) -> Figure:
    """The position signal as position x dimension: the learned rows of ``W_pos`` (pass them for a
    learned model), RoPE's rotation angles (as cosines), or the sinusoidal table otherwise."""

    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    if config.positional == "rope":
        cos, _ = positional.rope_angles(np.arange(n_positions), config.d_head, config.rope_base)
        data, label, name = cos, "cos(angle) per rotated pair", "rope"
    elif W_pos is not None:
        data = np.asarray(W_pos)[:n_positions]
        bound = float(np.abs(data).max()) or 1.0
        data, label, name = data / bound, f"W_pos / {bound:.2f}", "learned"
    else:
        data, label, name = positional.sinusoidal_table(n_positions, config.d_model), "sinusoidal value", "sinusoidal"
    im = ax.imshow(data, aspect="auto", cmap="RdBu", vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, label=label)
    ax.set_xlabel("dimension (pair)" if config.positional == "rope" else "dimension")
    ax.set_ylabel("position")
    ax.set_title(title or f"position codes ({name})")
    fig.tight_layout()
    return fig


def attention_patterns(patterns, labels: list, title: str = "attention patterns") -> Figure:
    """A layers x heads grid of patterns (L, H, T, T), query positions down, keys across."""
    patterns = np.asarray(patterns)
    L, H = patterns.shape[:2]
    fig = Figure(figsize=(2.2 * H + 0.5, 2.2 * L + 0.6))
    axes = fig.subplots(L, H, squeeze=False)
    short = [visible(s)[:6] for s in labels]
    for layer in range(L):
        for h in range(H):
            ax = axes[layer][h]
            ax.imshow(patterns[layer, h], cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"L{layer} H{h}", fontsize=8)
            if len(short) <= 16:
                ax.set_xticks(range(len(short)), short, rotation=90, fontsize=6)
                ax.set_yticks(range(len(short)), short, fontsize=6)
            else:
                ax.set_xticks([])
                ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def next_token_bars(probs, vocab_labels: list, k: int = 10, title: str = "next-token probabilities") -> Figure:
    """The ``k`` most likely next tokens."""
    probs = np.asarray(probs, dtype=float)
    top = np.argsort(-probs, kind="stable")[:k]
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    ax.barh(range(len(top))[::-1], probs[top], color="C0")
    ax.set_yticks(range(len(top))[::-1], [repr(vocab_labels[i]) for i in top], fontsize=8)
    ax.set_xlabel("probability")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def rope_rotations(positions, d_head: int = 8, base: float = 10000.0, title: str = "RoPE: one vector, rotated by position") -> Figure:
    """Each rotated pair of a RoPE head as a clock hand: the unit vector [1, 0] of every pair,
    rotated to each of ``positions``; fast pairs spin, slow pairs barely move."""

    positions = np.asarray(positions)
    cos, sin = positional.rope_angles(positions, d_head, base)  # (P, D/2)
    n_pairs = cos.shape[1]
    fig = Figure(figsize=(2.0 * n_pairs, 2.3))
    axes = fig.subplots(1, n_pairs, squeeze=False)[0]
    for i, ax in enumerate(axes):
        for p in range(len(positions)):
            ax.plot([0, cos[p, i]], [0, sin[p, i]], color=f"C{p % 10}", lw=1)
            ax.annotate(str(positions[p]), (cos[p, i], sin[p, i]), fontsize=6)
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.2, 1.2)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"pair {i}", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def similarity_vs_distance(vectors, title: str = "position codes: similarity against distance") -> Figure:
    """Cosine similarity of position vectors (P, C) to position 0 and to the middle position,
    against the distance between positions: nearby positions look alike."""
    V = np.asarray(vectors, dtype=float)
    U = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for ref in (0, len(U) // 2):
        sims = U @ U[ref]
        ax.plot(np.arange(len(U)) - ref, sims, label=f"against position {ref}")
    ax.set_xlabel("distance (positions)")
    ax.set_ylabel("cosine similarity")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def kv_cache_size(rows: Mapping, contexts, title: str = "KV-cache size against context length") -> Figure:
    """Bytes of cache against context length, one line per variant: ``rows = {label: bytes_per_token}``."""
    contexts = np.asarray(list(contexts))
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for label, per_token in rows.items():
        ax.plot(contexts, contexts * per_token / 2**20, marker="o", ms=3, label=label)
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("cache size (MiB)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def mlp_histograms(pre, post, layer: int = 0, title: str | None = None) -> Figure:
    """Distribution of an MLP's hidden units before and after the non-linearity (``hook_pre``, ``hook_post``)."""
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    ax.hist(np.asarray(pre).ravel(), bins=80, alpha=0.6, label="hook_pre (before the activation)")
    ax.hist(np.asarray(post).ravel(), bins=80, alpha=0.6, label="hook_post (after)")
    ax.set_yscale("log")
    ax.set_xlabel("activation value")
    ax.set_ylabel("count")
    ax.set_title(title or f"MLP activations, layer {layer}")
    ax.legend()
    fig.tight_layout()
    return fig


def sampling_effects(logits, vocab_labels: list, settings=None, k: int = 8,
                     title: str = "how temperature, top-k and top-p reshape the next-token distribution") -> Figure:
    """The same logits turned into probabilities under several sampling settings, side by side.

    ``settings`` is a list of dicts of `feedforward.probabilities` arguments
    (default: temperature 1, 0.5, 2, and top-p 0.9).
    """

    settings = settings or [{"temperature": 1.0}, {"temperature": 0.5}, {"temperature": 2.0}, {"top_p": 0.9}]
    base = probabilities(np.asarray(logits, dtype=float))
    top = np.argsort(-base, kind="stable")[:k]
    fig = Figure(figsize=(2.3 * len(settings), 3.0))
    axes = fig.subplots(1, len(settings), sharey=True, squeeze=False)[0]
    for ax, s in zip(axes, settings):
        p = probabilities(np.asarray(logits, dtype=float), **s)
        ax.barh(range(k)[::-1], p[top], color="C1")
        ax.set_title(", ".join(f"{a}={b}" for a, b in s.items()), fontsize=8)
        ax.set_xlim(0, 1)
    axes[0].set_yticks(range(k)[::-1], [repr(vocab_labels[i]) for i in top], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def pipeline_diagram(title: str = "minitransformer: five stages, five retrieval concepts") -> Figure:
    """The pipeline as five boxes, each with its stage, module, concept and the data it hands on
    (read from `concepts.STAGES`, so the picture cannot disagree with the code)."""
    from matplotlib.patches import FancyBboxPatch


    fig = Figure(figsize=(11, 2.9))
    ax = fig.add_subplot()
    colours = ["#fde2e4", "#dbeafe", "#dcfce7", "#fef9c3", "#ede9fe"]
    w, gap = 2.0, 0.45
    for k, s in enumerate(STAGES):
        x = k * (w + gap)
        ax.add_patch(FancyBboxPatch((x, 0.35), w, 1.3, boxstyle="round,pad=0.05", facecolor=colours[k], edgecolor="#666"))
        ax.text(x + w / 2, 1.38, f"{s.number}. {s.name}", ha="center", fontsize=8.5, weight="bold")
        ax.text(x + w / 2, 1.05, s.concept, ha="center", fontsize=11, style="italic", color="#333")
        ax.text(x + w / 2, 0.6, f"{s.module}", ha="center", fontsize=8, family="monospace", color="#555")
        if k < len(STAGES) - 1:
            ax.annotate("", xy=(x + w + gap - 0.05, 1.0), xytext=(x + w + 0.08, 1.0),
                        arrowprops=dict(arrowstyle="->", color="#444"))
        ax.text(x + w / 2, 0.05, s.data_out.split(" (or")[0].split(" ->")[0], ha="center", fontsize=7, color="#444")
    ax.text(-0.1, 1.0, "text", ha="right", va="center", fontsize=9)
    ax.set_xlim(-0.6, len(STAGES) * (w + gap))
    ax.set_ylim(-0.1, 1.9)
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def logit_lens(rows: list, vocab_labels: list, title: str = "logit lens: the next-token guess after each block") -> Figure:
    """The top guesses read from the residual stream after each block (rows of `trace.logit_lens`):
    one row per layer, the guesses as labelled bars of their probability."""
    k = len(rows[0]["top_ids"])
    fig = Figure(figsize=(FIGSIZE[0], 0.5 + 0.55 * len(rows)))
    ax = fig.add_subplot()
    for r in rows:
        left = 0.0
        for j, (i, p) in enumerate(zip(r["top_ids"], r["top_probs"])):
            ax.barh(r["layer"], p, left=left, color=f"C{j % 10}", edgecolor="white")
            if p > 0.04:
                ax.text(left + p / 2, r["layer"], visible(vocab_labels[i])[:8], ha="center", va="center", fontsize=7)
            left += p
    ax.set_yticks([r["layer"] for r in rows], [f"after block {r['layer']}" for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"probability of the top {k} guesses")
    ax.set_title(title)
    fig.tight_layout()
    return fig
