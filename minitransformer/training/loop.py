"""Training: batches, evaluation, and the loop (warmup + cosine schedule, clipping, accumulation).

Resuming is exact: a checkpoint stores the parameters, the optimizer's moments,
the step, and the state of every random generator, so a run that stops and
resumes produces bit-for-bit the losses of a run that never stopped.

Nothing is lost: a checkpoint is only written from weights that are finite and
give a finite loss, so a run that diverges stops with the last good checkpoint
on disk (`TrainingDiverged`); Ctrl-C or SIGTERM (what ``kill`` and job schedulers
send) lets the current step finish, saves, and stops (`TrainingInterrupted`).

Deliberately left out: mixed precision and learning-rate finders. Data-parallel
training over several processes is `training.distributed` (a `Trainer` whose
gradients are all-reduced by torch.distributed).
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Optional

import numpy as np

from ..core.nn import cross_entropy_forward, no_grad
from ..feedforward import moe
from ..core.progress import progress_bar
from ..core.values import is_int
from ..model import GPT
from .checkpoint import model_from_checkpoint, read_checkpoint, save_checkpoint


class TrainingDiverged(FloatingPointError):
    """The loss or the weights stopped being finite. ``checkpoint`` and ``checkpoint_step`` name
    the last good checkpoint (None if none was written); nothing non-finite was saved."""

    def __init__(self, message: str, step: int, checkpoint=None, checkpoint_step: Optional[int] = None):
        super().__init__(message)
        self.step, self.checkpoint, self.checkpoint_step = step, checkpoint, checkpoint_step


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped training between two steps; ``checkpoint`` holds step ``step``
    (None if not saved); ``signal_name`` is ``"SIGINT"`` or ``"SIGTERM"``."""

    def __init__(self, step: int, checkpoint=None, signal_name: Optional[str] = "SIGINT"):
        super().__init__(f"interrupted at step {step}" + (f"; saved {checkpoint}" if checkpoint else ""))
        self.step, self.checkpoint, self.signal_name = step, checkpoint, signal_name or "SIGINT"

    @property
    def exit_code(self) -> int:
        """The shell's code for a process stopped by the signal: 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))
from .optimizer import AdamW, clip_grad_norm, lr_at
from .stop import StopOnSignal


# --------------------------------------------------------------------------- batches
def get_batch(tokens: np.ndarray, batch_size: int, context: int, rng: np.random.Generator):
    """Random windows of ``context + 1`` tokens: inputs (B, T) and next-token targets (B, T)."""
    if len(tokens) < context + 2:
        raise ValueError(f"the token stream has {len(tokens)} tokens, too few for windows of {context + 1}; "
                         "use more text or a shorter context")
    starts = rng.integers(0, len(tokens) - context - 1, size=batch_size)
    idx = starts[:, None] + np.arange(context + 1)  # (B, T+1)
    window = tokens[idx]
    return window[:, :-1], window[:, 1:]


def unigram_loss(train_tokens: np.ndarray, val_tokens: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy on ``val_tokens`` of the unigram model of ``train_tokens`` (add-one smoothing).

    The baseline a language model must beat: it knows how frequent each token is,
    and nothing about context.
    """
    counts = np.bincount(np.asarray(train_tokens), minlength=vocab_size).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.asarray(val_tokens)].mean())


def evaluate_tokens(model: GPT, tokens: np.ndarray, context: Optional[int] = None, batch_size: int = 16) -> float:
    """Mean next-token loss over ``tokens`` cut into consecutive windows (deterministic, every token once).

    Unlike `Trainer.evaluate` (a few random batches), this reads the whole stream, so the
    same model and tokens always give the same figure: the one recorded with the course model.
    """

    T = context or model.config.context_length
    tokens = np.asarray(tokens)
    n = (len(tokens) - 1) // T
    if n == 0:
        raise ValueError(f"{len(tokens)} tokens are too few for one window of {T} + 1")
    x = tokens[: n * T].reshape(n, T)
    y = tokens[1: n * T + 1].reshape(n, T)
    total = 0.0
    with no_grad():
        for start in range(0, n, batch_size):  # batches of windows, to bound memory
            logits = model.forward(x[start:start + batch_size])
            total += cross_entropy_forward(logits, y[start:start + batch_size])[0] * len(logits)
    return total / n


# --------------------------------------------------------------------------- the loop
@dataclass
class TrainConfig:
    """Everything about a training run that is not the model's shape."""

    steps: int = 1000
    batch_size: int = 16
    context: Optional[int] = None  # None: the model's context_length
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup: int = 50
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    grad_clip: float = 1.0
    accum_steps: int = 1
    eval_every: int = 100
    eval_batches: int = 8
    seed: int = 0
    checkpoint_every: int = 0  # 0: only at the end (if a path is given)

    def __post_init__(self):
        for name in ("steps", "batch_size", "accum_steps", "eval_batches"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name}={v!r} must be a positive int")
        for name in ("eval_every", "checkpoint_every", "warmup", "seed"):  # 0 allowed: never / no warmup
            v = getattr(self, name)
            if not is_int(v) or v < 0:
                raise ValueError(f"{name}={v!r} must be an int >= 0")
        if not (self.lr > 0 and self.min_lr >= 0):
            raise ValueError(f"lr={self.lr} must be > 0 and min_lr={self.min_lr} >= 0")


@dataclass
class TrainState:
    """What changes as training runs (saved in checkpoints)."""

    step: int = 0
    losses: list = field(default_factory=list)  # (step, train loss)
    evals: list = field(default_factory=list)  # (step, validation loss)
    tokens_seen: int = 0


class Trainer:
    """Trains a `GPT` on a stream of token ids.

    >>> from minitransformer.core.config import ModelConfig
    >>> model = GPT(ModelConfig.preset("toy"), seed=0)
    >>> tokens = np.random.default_rng(0).integers(0, 64, 2000)
    >>> t = Trainer(model, tokens, config=TrainConfig(steps=3, batch_size=2, eval_every=0), log=None)
    >>> state = t.run()
    >>> state.step, len(state.losses)
    (3, 3)
    """

    # the signals that stop training after the step in progress, with a checkpoint (see `run`)
    stop_signals = ("SIGINT", "SIGTERM")

    def __init__(self, model: GPT, train_tokens: np.ndarray, val_tokens: Optional[np.ndarray] = None,
                 config: Optional[TrainConfig] = None, log: Optional[Callable[[str], None]] = print):
        self.model, self.config = model, config or TrainConfig()
        self.train_tokens = np.asarray(train_tokens)
        self.val_tokens = None if val_tokens is None else np.asarray(val_tokens)
        self.context = self.config.context or model.config.context_length
        if self.context > model.config.context_length:
            raise ValueError(f"training context {self.context} is longer than the model's context_length "
                             f"{model.config.context_length}")
        c = self.config
        self.opt = AdamW(model.params, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
        self.state = TrainState()
        self.batch_rng = np.random.default_rng([c.seed, 1])  # the data order
        self.dropout_rng = np.random.default_rng([c.seed, 2])
        self.eval_rng_seed = [c.seed, 3]  # the same validation batches at every evaluation
        self.log = log
        self._grad = np.zeros_like(self.opt.buffer)
        self.tokenizer_sha256: Optional[str] = None  # recorded in checkpoints (see checkpoint.tokenizer_fingerprint)
        self.last_checkpoint: Optional[tuple] = None  # (path, step) of the last checkpoint written or resumed from
        self.run_info: dict = {}  # saved as the checkpoint's "extra" (the command line records preset and corpus)

    def _diverged(self, what: str):
        c = self.config
        path, step = self.last_checkpoint or (None, None)
        where = (f"the last good checkpoint is {path} (step {step}); nothing after it was saved" if path else
                 "no checkpoint was written yet")
        raise TrainingDiverged(
            f"training diverged at step {self.state.step}: {what}. Lower the learning rate (now {c.lr}, try "
            f"{c.lr / 10:g}) and keep grad_clip on; {where}", self.state.step, path, step)

    def check_savable(self) -> None:
        """Raise `TrainingDiverged` unless the weights are finite and give a finite loss.

        note: a huge learning rate can leave weights that are finite but overflow in the next
        forward pass; one fixed batch (no gradient, the data order untouched) catches that
        before a file is written, so a checkpoint on disk is always one training can go on from.
        """
        if not np.isfinite(self.opt.buffer).all():
            self._diverged("the weights are not finite")
        x, y = get_batch(self.train_tokens, 1, self.context, np.random.default_rng(self.eval_rng_seed))
        with no_grad():
            loss = cross_entropy_forward(self.model.forward(x), y)[0]
        if not math.isfinite(loss):
            self._diverged(f"the loss of the weights about to be saved is {loss}")

    def save(self, path) -> None:
        """Write a checkpoint of the current state (`save_checkpoint`) after `check_savable`; `run` calls it."""
        self.check_savable()
        save_checkpoint(path, self)
        self.last_checkpoint = (path, self.state.step)

    def train_step(self) -> float:
        """One optimizer step (``accum_steps`` micro-batches); returns the mean loss."""
        c, model = self.config, self.model
        total, loads = 0.0, None
        for micro in range(c.accum_steps):
            x, y = get_batch(self.train_tokens, c.batch_size, self.context, self.batch_rng)
            loss = model.loss(x, y, rng=self.dropout_rng, train=True)
            if not math.isfinite(loss):
                self._diverged(f"the loss became {loss}")
            if micro == 0:
                self.opt.gather(model.backward(), out=self._grad)
            else:  # accumulate: the optimizer's scratch array is free between steps
                self._grad += self.opt.gather(model.backward(), out=self.opt.scratch)
            total += loss
            loads = moe.add_loads(loads, model.last_expert_load)
        if c.accum_steps > 1:
            self._grad *= 1.0 / c.accum_steps
        clip_grad_norm(self._grad, c.grad_clip)
        self.opt.step(self._grad, lr=lr_at(self.state.step, c.lr, c.warmup, c.steps, c.min_lr))
        moe.balance_routers(model.params, loads, model.config)  # MoE: loss-free balancing, after the step
        if not np.isfinite(self.opt.buffer).all():  # one pass over every weight: cheap next to a step
            self._diverged("the weights stopped being finite after the update")
        self.state.step += 1
        self.state.tokens_seen += c.accum_steps * c.batch_size * self.context
        return total / c.accum_steps

    def evaluate(self) -> float:
        """Mean loss on ``eval_batches`` fixed batches of the validation tokens."""

        tokens = self.val_tokens if self.val_tokens is not None else self.train_tokens
        rng = np.random.default_rng(self.eval_rng_seed)
        losses = []
        with no_grad():
            for _ in range(self.config.eval_batches):
                x, y = get_batch(tokens, self.config.batch_size, self.context, rng)
                losses.append(cross_entropy_forward(self.model.forward(x), y)[0])
        return float(np.mean(losses))

    def run(self, checkpoint_path=None, progress: bool = False,
            on_eval: Optional[Callable[["Trainer", int, float], None]] = None,
            stop_at: Optional[int] = None) -> TrainState:
        """Train until ``config.steps``, evaluating and checkpointing as configured.

        Args:
            checkpoint_path: save here every ``checkpoint_every`` steps, at the end, and on Ctrl-C
                or SIGTERM (`stop_signals`);
                only weights that are finite and give a finite loss are ever saved (`save`).
            stop_at: stop (and save) at this step although the schedule runs to ``config.steps``;
                `resume` continues from there as if the run had never stopped.
            progress: draw a tqdm progress bar (``tqdm.auto``: a widget in notebooks) with the
                loss and tokens/s; otherwise report through ``log``.
            on_eval: called as ``on_eval(trainer, step, val_loss)`` after each evaluation, e.g.
                to print a sample and watch it improve.

        Raises:
            TrainingDiverged: the loss or the weights stopped being finite (a `FloatingPointError`;
                the message names the last good checkpoint).
            TrainingInterrupted: Ctrl-C or SIGTERM (a `KeyboardInterrupt`), after the step in
                progress finished and the checkpoint was saved.
        """
        c = self.config
        t0, tokens0 = time.perf_counter(), self.state.tokens_seen
        bar = _progress_bar(c.steps, self.state.step) if progress else None
        with StopOnSignal(self.stop_signals) as ctrl_c:
            try:
                self._loop(checkpoint_path, bar, on_eval, t0, tokens0, ctrl_c, stop_at)
            finally:
                if bar is not None:
                    bar.close()
            stopped = self.stop_agreed(ctrl_c)
            if stopped:  # a peer's signal (data parallel): this process's own may still be on its way
                ctrl_c.expect_own_signal()
            if checkpoint_path:  # still inside: a first signal arriving now does not cut the save short
                self.save(checkpoint_path)
        if stopped:
            raise TrainingInterrupted(self.state.step, checkpoint_path or None, ctrl_c.signal_name)
        return self.state

    def stop_agreed(self, ctrl_c: StopOnSignal) -> bool:
        """Whether to stop after the step just taken: a signal came (`StopOnSignal`). One process decides
        alone; a data-parallel rank overrides this, so that every rank stops after the same step."""
        return ctrl_c.requested

    def _loop(self, checkpoint_path, bar, on_eval, t0, tokens0, ctrl_c, stop_at=None) -> None:
        c = self.config
        end = c.steps if stop_at is None else min(stop_at, c.steps)
        while self.state.step < end and not self.stop_agreed(ctrl_c):
            loss = self.train_step()
            self.state.losses.append((self.state.step, loss))
            s = self.state.step
            if c.eval_every and (s % c.eval_every == 0 or s == c.steps):
                self.state.evals.append((s, self.evaluate()))
                if not math.isfinite(self.state.evals[-1][1]):
                    self._diverged(f"the validation loss became {self.state.evals[-1][1]}")
                if on_eval is not None:
                    on_eval(self, s, self.state.evals[-1][1])
            rate = (self.state.tokens_seen - tokens0) / max(time.perf_counter() - t0, 1e-9)
            val = f"  val {self.state.evals[-1][1]:.3f}" if self.state.evals else ""
            if bar is not None:
                bar.set_postfix_str(f"loss {loss:.3f}{val}  {rate:,.0f} tok/s", refresh=False)
                bar.update(1)  # redraws at tqdm's own pace, postfix included
            elif self.log and (s % max(1, c.steps // 20) == 0 or s == c.steps):
                self.log(f"step {s:>5}/{c.steps}  loss {loss:.3f}{val}  {rate:,.0f} tokens/s")
            if checkpoint_path and c.checkpoint_every and s % c.checkpoint_every == 0 and s < c.steps:
                self.save(checkpoint_path)


def _progress_bar(total: int, initial: int):
    return progress_bar(total, initial, unit="step")  # a widget in notebooks, a text bar in a terminal


# --------------------------------------------------------------------------- resuming
RESUME_CHANGES = ("steps", "lr", "eval_every", "eval_batches", "checkpoint_every")  # what may change on resume


def resume(path, train_tokens, val_tokens=None, log=print, make_trainer=None, **changes) -> Trainer:
    """Rebuild a `Trainer` exactly as it was when ``path`` was saved, with optional ``changes``.

    ``changes`` may set the fields in `RESUME_CHANGES`: ``steps`` is the total to reach (so
    a larger figure trains longer; the cosine schedule is stretched to the new total from
    here on), ``lr`` the new peak learning rate (``min_lr`` keeps its ratio to it). Anything
    else (batch size, seed, the model's shape) would not continue the same run: it is refused.
    ``make_trainer`` builds the trainer (default `Trainer`; a data-parallel run passes its own).
    """
    unknown = sorted(set(changes) - set(RESUME_CHANGES))
    if unknown:
        raise ValueError(f"{', '.join(unknown)} cannot change when resuming (the run would not be the same); "
                         f"what can: {', '.join(RESUME_CHANGES)}. Start a new run to change the rest")
    meta, arrays = read_checkpoint(path)
    if meta.get("weights_only"):
        raise ValueError(f"{path} holds only model weights (saved with save_model), not a training state; "
                         "resume needs a checkpoint written during training (save_checkpoint)")
    model = model_from_checkpoint(meta, arrays, path)
    try:  # a hand-edited or foreign file: fields missing, unknown, or of the wrong kind
        tc = dict(meta["train_config"])
        tc["betas"] = tuple(tc["betas"])
        unknown_fields = sorted(set(tc) - {f.name for f in fields(TrainConfig)})
        if unknown_fields:
            raise ValueError(f"unknown training settings {', '.join(map(repr, unknown_fields))}")
        recorded = TrainConfig(**tc)
        step = meta["state"]["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"the step {step!r} is not a count")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a usable checkpoint: its training settings are damaged "
                         f"({type(exc).__name__}: {exc})") from None
    changes = {k: v for k, v in changes.items() if v is not None}
    if "steps" in changes and changes["steps"] < step:
        raise ValueError(f"steps={changes['steps']} is below the step {path} has reached ({step}); steps is the "
                         f"total to reach, so pass more than {step} to train longer")
    if "lr" in changes:
        changes["min_lr"] = recorded.min_lr * changes["lr"] / recorded.lr
    config = replace(recorded, **changes)  # a bad change (lr=-1) is refused here, naming the setting
    trainer = (make_trainer or Trainer)(model, train_tokens, val_tokens, config, log=log)
    try:
        trainer.opt.load_state_dict({"m": arrays["opt.m"], "v": arrays["opt.v"], "t": meta["opt_t"]})
        st = meta["state"]
        trainer.state = TrainState(st["step"], [tuple(x) for x in st["losses"]], [tuple(x) for x in st["evals"]],
                                   st["tokens_seen"])
        trainer.batch_rng.bit_generator.state = meta["rng"]["batch"]
        trainer.dropout_rng.bit_generator.state = meta["rng"]["dropout"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a usable checkpoint: its training state is incomplete "
                         f"({type(exc).__name__}: {exc})") from None
    trainer.tokenizer_sha256 = meta.get("tokenizer_sha256")
    trainer.run_info = dict(meta.get("extra") or {})
    trainer.last_checkpoint = (path, step)
    return trainer
