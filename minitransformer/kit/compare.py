"""Comparing variants: train small models that differ in one stage, side by side.

A student who writes a new positional encoding wants to know two things: is it
right (`testing.check_stage`), and what does it change? `compare` answers the
second: it trains one small model per configuration on the same tokens, from
the same seed, with the same data order, and returns their loss curves and
speed, ready to plot.

    >>> from minitransformer.core.config import ModelConfig
    >>> base = ModelConfig.preset("toy", vocab_size=300, context_length=32)
    >>> result = compare({"learned": base, "rope": base.replace(positional="rope")}, steps=3, corpus="tiny")
    >>> sorted(result.runs)
    ['learned', 'rope']

Deliberately left out: repeated seeds and confidence intervals; a few hundred
steps on one seed show large differences, not small ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..core.config import ModelConfig
from ..model import GPT
from ..training import data
from ..training.loop import TrainConfig, Trainer, unigram_loss

MIN_VOCAB = 257  # the tokenizer trained for the comparison: 256 byte ids, <|endoftext|>, then merges


@dataclass
class Run:
    """One configuration's training: its losses, final validation loss and speed."""

    config: ModelConfig
    losses: list
    evals: list
    tokens_per_second: float
    num_params: int

    @property
    def final_val_loss(self) -> float:
        return self.evals[-1][1] if self.evals else float("nan")


@dataclass
class CompareResult:
    runs: dict = field(default_factory=dict)
    baseline: float = float("nan")

    def table(self) -> str:
        """One line per configuration: parameters, final validation loss, tokens/s."""
        lines = [f"{'variant':<16}{'params':>10}{'val loss':>10}{'tokens/s':>12}"]
        for name, r in self.runs.items():
            lines.append(f"{name:<16}{r.num_params:>10,}{r.final_val_loss:>10.3f}{r.tokens_per_second:>12,.0f}")
        lines.append(f"{'unigram':<16}{'':>10}{self.baseline:>10.3f}")
        return "\n".join(lines)

    def figure(self, title: str = "variants compared"):
        """Validation loss curves (left) and training speed (right) of every run."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.5))
        ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
        for name, r in self.runs.items():
            if r.evals:
                steps, values = zip(*r.evals)
                ax.plot(steps, values, marker="o", ms=3, label=name)
        ax.axhline(self.baseline, ls="--", color="gray", lw=1, label="unigram baseline")
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss (nats/token)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        names = list(self.runs)
        bx.barh(names, [self.runs[n].tokens_per_second for n in names], color="C2")
        bx.set_xlabel("training tokens/s")
        fig.tight_layout()
        return fig


def compare(configs: dict, steps: int = 200, batch_size: int = 8, corpus: str = data.DEFAULT_CORPUS,
            seed: int = 0, lr: float = 3e-3, eval_every: int | None = None) -> CompareResult:
    """Train one model per named config on the same tokens; return their curves and speed.

    Every run reads the same windows of ``context_length`` tokens in the same order, so the
    configs must share ``context_length``: configs that differ in it are refused rather than
    trained on windows of another length than they say (which would hide the difference)
    or on different tokens per step (which would make the curves incomparable).

    Args:
        configs: ``{name: ModelConfig}``; they must share ``vocab_size`` (one tokenizer serves all,
            trained here: at least 257 ids, the 256 bytes and ``<|endoftext|>``) and ``context_length``.
        steps, batch_size, lr: training of every run (same seed and data order for all).
        corpus: which built-in corpus (``data.CORPORA``).

    Raises:
        TypeError: if ``configs`` is not a dict of name -> `ModelConfig`.
        ValueError: if it is empty, or its configs differ in ``vocab_size`` or ``context_length``,
            or their ``vocab_size`` is below 257.
    """
    V, context = _shared_sizes(configs)
    tokens = data.corpus_tokens(corpus, V, context)  # a tiny corpus validates on the training tokens
    train_ids, val_ids = tokens.train, tokens.val
    result = CompareResult(baseline=unigram_loss(train_ids, val_ids, V))
    every = eval_every or max(1, steps // 5)
    for name, cfg in configs.items():
        tc = TrainConfig(steps=steps, batch_size=batch_size, context=context, lr=lr, seed=seed,
                         warmup=max(1, steps // 10), eval_every=every, eval_batches=4)
        trainer = Trainer(GPT(cfg, seed=seed), train_ids, val_ids, tc, log=None)
        t0 = time.perf_counter()
        state = trainer.run()
        seconds = time.perf_counter() - t0
        result.runs[name] = Run(cfg, state.losses, state.evals, state.tokens_seen / seconds, trainer.model.num_params)
    return result


def _shared_sizes(configs) -> tuple[int, int]:
    """The ``vocab_size`` and ``context_length`` every config shares, or an error that says what differs."""
    if not isinstance(configs, dict):
        raise TypeError(f"configs must be a dict of name -> ModelConfig, got {type(configs).__name__}: "
                        "compare({'learned': cfg, 'rope': cfg.replace(positional='rope')})")
    if not configs:
        raise ValueError("give at least one configuration: compare({'name': ModelConfig(...)})")
    bad = {name: type(c).__name__ for name, c in configs.items() if not isinstance(c, ModelConfig)}
    if bad:
        raise TypeError(f"configs must map names to ModelConfig, got {bad}: build each with ModelConfig(...) "
                        "or ModelConfig.preset(...)")

    def each(attr: str) -> str:
        return ", ".join(f"{name!r}: {getattr(c, attr)}" for name, c in configs.items())

    if len({c.vocab_size for c in configs.values()}) != 1:
        raise ValueError(f"all configs must share vocab_size (one tokenizer for all), got {{{each('vocab_size')}}}")
    if len({c.context_length for c in configs.values()}) != 1:
        raise ValueError(f"all configs must share context_length (every run reads the same windows of tokens), "
                         f"got {{{each('context_length')}}}: give them one, e.g. cfg.replace(context_length=...)")
    cfg = next(iter(configs.values()))
    if cfg.vocab_size < MIN_VOCAB:
        raise ValueError(f"the configs have vocab_size={cfg.vocab_size}, but compare trains a byte-level tokenizer "
                         f"for them, which needs at least {MIN_VOCAB} ids (256 bytes and <|endoftext|>): build them "
                         f"with e.g. ModelConfig.preset('toy', vocab_size=300)")
    return cfg.vocab_size, cfg.context_length
