"""Watch induction heads form: a two-layer attention-only model on repeated random tokens.

An induction head completes ``[A][B] ... [A] -> [B]``: at the second ``A`` it attends to
the token after the first ``A`` and copies it (Elhage et al., 2021; Olsson et al., 2022).
It needs two layers: a *previous-token* head in layer 0 writes "the token before me was
A" into each position, and a head in layer 1 matches its query (the current token A)
against those keys. Trained on sequences whose second half repeats the first, a model
can only predict the second half by building this circuit, and it does so suddenly: the
induction score jumps and the loss on the second half drops in one short stretch of
training, the *phase change*.

The model uses the MLP variant ``ffn="none"`` (the sub-layer adds zeros, so the model
is attention-only), trains with the package's own `AdamW` and hand-written
backward, and records the induction score and the in-context loss as it goes.

Dimension letters: B batch, T positions (2 * half), V vocabulary, L layers, H heads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core import nn
from ..core.config import ModelConfig
from ..core.values import is_int, is_number
from ..model import GPT
from ..training.optimizer import AdamW, clip_grad_norm
from .detectors import head_scores, repeated_random_tokens
from .inputs import check_ids


def attention_only_config(vocab: int = 32, half: int = 10, d_model: int = 64, n_heads: int = 4,
                          n_layers: int = 2, positional: str = "learned") -> ModelConfig:
    """A small attention-only model (``ffn="none"``, untied head) for sequences of 2·half tokens."""
    return ModelConfig(vocab_size=vocab, context_length=2 * half, d_model=d_model, n_layers=n_layers,
                       n_heads=n_heads, ffn="none", positional=positional, norm="layernorm", tie_embeddings=False)


# --------------------------------------------------------------------------- training and recording
@dataclass
class InductionRun:
    """What `train_induction` recorded, every ``eval_every`` steps and at the end."""

    steps: list = field(default_factory=list)
    induction: list = field(default_factory=list)  # best induction score among the last layer's heads
    previous_token: list = field(default_factory=list)  # best previous-token score among layer 0's heads
    loss_first: list = field(default_factory=list)  # mean loss predicting tokens of the first half
    loss_second: list = field(default_factory=list)  # ... of the second half (in-context)
    scores: dict = field(default_factory=dict)  # the final head_scores (L, H) arrays
    model: GPT = None

    def phase_change(self) -> int:
        """The step at which the induction score first passes half-way from its first value to its best."""
        s = np.asarray(self.induction)
        mid = s[0] + 0.5 * (s.max() - s[0])
        return int(self.steps[int(np.argmax(s >= mid))])

    def as_arrays(self) -> dict:
        return {k: np.asarray(getattr(self, k)) for k in
                ("steps", "induction", "previous_token", "loss_first", "loss_second")}


def in_context_losses(model: GPT, ids: np.ndarray) -> tuple[float, float]:
    """Mean next-token loss on the first half's targets and on the second half's: ``(first, second)``.

    ``ids`` (B, 2·half); target t is ids[t + 1]. Targets 1..half-1 are random (loss near log V at
    best); targets half..2·half-1 repeat the first half and can be predicted in context.
    """
    ids = check_ids(ids)
    half = ids.shape[1] // 2
    with nn.no_grad():
        logits = model.forward(ids[:, :-1])  # (B, T-1, V)
    logp = nn.log_softmax(logits.astype(np.float64))  # (B, T-1, V)
    target = np.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]  # (B, T-1)
    return float(-target[:, :half - 1].mean()), float(-target[:, half - 1:].mean())


def training_batch(rng: np.random.Generator, batch: int, length: int, vocab: int, min_half: int = 3):
    """``(ids, targets)``, each (batch, length): random filler, then h random distinct tokens, then the same h again.

    h is drawn per row from min_half..(length + 1) // 2, so where the repeat starts, and how far
    back its first copy lies, changes from row to row. Targets are the next tokens of the repeat's
    second copy only (-100, ignored, elsewhere): the loss rewards exactly what context can predict.
    note: with one fixed layout the model finds shortcuts instead of induction (a head that attends
    a fixed distance back, or half-way back, predicts the second half as well), and its induction
    score stays low. Random lengths and starts take those shortcuts away.
    """
    ids = np.empty((batch, length + 1), np.int64)
    targets = np.full((batch, length), -100, np.int64)
    for row in range(batch):
        h = int(rng.integers(min_half, (length + 1) // 2 + 1))
        seg = repeated_random_tokens(rng, 1, h, vocab)[0]  # (2h,)
        ids[row] = np.concatenate([rng.integers(0, vocab, length + 1 - 2 * h), seg])  # filler, then the repeat
        targets[row, length - h:] = ids[row, length + 1 - h:]  # the second copy's tokens, as next-token targets
    return ids[:, :-1], targets


def train_induction(steps: int = 600, batch: int = 64, lr: float = 1e-3, eval_every: int = 25, seed: int = 0,
                    config: ModelConfig = None, eval_batch: int = 64) -> InductionRun:
    """Train an attention-only model on repeated random sequences; record scores and losses.

    Each training sequence ends with h random tokens repeated once, after random filler
    (`training_batch`); the loss is next-token cross-entropy on the repeat's second copy. Every ``eval_every`` steps,
    and after the last, the model is scored on fixed held-out sequences (same seed, same run); ``eval_every=0``
    scores it only once, at the end.

    Raises:
        ValueError: unless ``steps``, ``batch`` and ``eval_batch`` are positive ints, ``eval_every`` an int >= 0
            and ``lr`` a finite number > 0; or for a ``config`` that is not attention-only.
    """
    for name, value, least in (("steps", steps, 1), ("batch", batch, 1), ("eval_batch", eval_batch, 1),
                               ("eval_every", eval_every, 0)):
        if not is_int(value) or value < least:
            what = "a positive int" if least else "an int >= 0 (0: score only at the end)"
            raise ValueError(f"{name}={value!r} must be {what}")
    if not (is_number(lr) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr={lr!r} must be a finite number > 0, e.g. 1e-3")
    config = config or attention_only_config()
    if config.ffn != "none":
        raise ValueError(f"train_induction wants an attention-only model (ffn='none'), got ffn={config.ffn!r}")
    half = config.context_length // 2
    rng = np.random.default_rng(seed)
    model = GPT(config, seed=rng)
    opt = AdamW(model.params, lr=lr, weight_decay=0.0)
    held_out = repeated_random_tokens(np.random.default_rng(seed + 1), eval_batch, half, config.vocab_size)  # (B, T)
    run = InductionRun(model=model)
    grad = np.zeros_like(opt.buffer)

    def record(step: int) -> None:
        scores = head_scores(model, held_out)
        first, second = in_context_losses(model, held_out)
        run.steps.append(step)
        run.induction.append(float(scores["induction"][-1].max()))
        run.previous_token.append(float(scores["previous_token"][0].max()))
        run.loss_first.append(first)
        run.loss_second.append(second)
        run.scores = scores

    for step in range(steps):
        if eval_every and step % eval_every == 0:
            record(step)
        ids, targets = training_batch(rng, batch, config.context_length, config.vocab_size)  # (B, T) each
        model.loss(ids, targets)
        opt.gather(model.backward(), out=grad)
        clip_grad_norm(grad, 1.0)
        opt.step(grad)
    record(steps)
    return run
