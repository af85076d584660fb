"""Figures of training: loss curves."""

from __future__ import annotations

from matplotlib.figure import Figure


from .style import FIGSIZE


# ---------------------------------------------------------------------- training
def loss_curves(losses, evals=(), baseline: float | None = None, title: str = "training") -> Figure:
    """Training loss per step (``TrainState.losses``), validation loss (``TrainState.evals``),
    and optionally the unigram baseline a model must beat (`train.unigram_loss`)."""
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    if losses:
        steps, values = zip(*losses)
        ax.plot(steps, values, lw=0.8, alpha=0.6, label="train loss")
    if evals:
        steps, values = zip(*evals)
        ax.plot(steps, values, "o-", ms=3, label="validation loss")
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="gray", lw=1, label=f"unigram baseline ({baseline:.2f})")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig
