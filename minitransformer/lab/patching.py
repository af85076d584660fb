"""Activation patching: which activations carry the difference between two prompts?

Run a *clean* prompt (the model answers right) and a *corrupted* one (a token changed,
so the answer changes), then run one of them again with a single activation taken
from the other run, and measure how far a metric moves (Vig et al., 2020, "causal
mediation analysis"; Meng et al., 2022, "causal tracing").

Two directions, one function: ``run`` the ``base_ids`` with activations from
``source_cache``.

- denoising: base = corrupted, source = clean. A patch that brings the metric back
  to its clean value found an activation that is *sufficient* to carry the answer.
- noising: base = clean, source = corrupted. A patch that destroys the metric found
  one that is *necessary*. Attribution patching (`attribution.py`) estimates this one.

The default metric is the logit difference at the last position between a correct
and an incorrect answer token, ``logits[:, -1, correct] - logits[:, -1, incorrect]``,
averaged over the batch (Wang et al., 2022). Any function ``logits -> float`` works;
attribution patching also needs its gradient (`LogitDiff.grad`).

Results are plain arrays: (layers, positions) for the residual stream and the
sub-layer outputs, (layers, heads) and (layers, positions, heads) for heads.

Dimension letters: B batch, T positions, C width, H heads, D head width, L layers, V vocabulary.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ..core.values import is_int
from ..trace import ActivationCache, run_with_cache, run_with_hooks
from .inputs import check_ids, check_pair, check_position, check_same_shape, check_token_ids

Metric = Callable[[np.ndarray], float]

RESIDUAL = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")


class LogitDiff:
    """``logits[:, position, correct] - logits[:, position, incorrect]``, mean over the batch.

    ``correct`` and ``incorrect`` are token ids: one int for every row, or one per row (B,).
    Negative ids are refused at construction; ids the logits' vocabulary does not have, a
    ``position`` outside the prompt, or a per-row list of the wrong length, when applied.

    >>> m = LogitDiff(correct=2, incorrect=0)
    >>> m(np.array([[[1.0, 0.0, 3.0]]]))
    2.0
    """

    def __init__(self, correct, incorrect, position: int = -1):
        check_token_ids(correct, "correct")  # the vocabulary's size is checked when applied
        check_token_ids(incorrect, "incorrect")
        if not is_int(position):
            raise ValueError(f"position={position!r} must be an int (-1 is the last position)")
        self.correct, self.incorrect, self.position = correct, incorrect, int(position)

    def _rows(self, logits: np.ndarray):
        logits = np.asarray(logits)
        if logits.ndim != 3:
            raise ValueError(f"logits must be (batch, time, vocabulary), got shape {logits.shape}")
        B, T, V = logits.shape
        check_position(self.position, T)
        ids = []
        for name, value in (("correct", self.correct), ("incorrect", self.incorrect)):
            array = check_token_ids(value, name, V)
            if array.ndim == 1 and len(array) != B:
                raise ValueError(f"{name} has {len(array)} ids but the logits {B} rows: give one id for every "
                                 "row, or exactly one per row")
            ids.append(np.broadcast_to(array, (B,)))
        return np.arange(B), ids[0], ids[1]

    def __call__(self, logits: np.ndarray) -> float:
        b, c, w = self._rows(logits)
        last = logits[:, self.position]  # (B, T, V) -> (B, V)
        return float(np.mean(last[b, c] - last[b, w]))

    def grad(self, logits: np.ndarray) -> np.ndarray:
        """d metric / d logits, same shape as ``logits`` (B, T, V)."""
        b, c, w = self._rows(logits)
        g = np.zeros_like(logits)
        g[b, self.position, c] += 1.0 / len(b)
        g[b, self.position, w] -= 1.0 / len(b)
        return g


def normalized(result: np.ndarray, clean_value: float, corrupted_value: float) -> np.ndarray:
    """Rescale a patching result so that 0 is the corrupted metric and 1 the clean one."""
    if clean_value == corrupted_value:
        raise ValueError("the clean and corrupted metrics are equal; choose prompts (or a metric) that differ")
    return (np.asarray(result, np.float64) - corrupted_value) / (clean_value - corrupted_value)


def _check_pair(model, base_ids, source_cache: ActivationCache) -> np.ndarray:
    base_ids = check_ids(base_ids, "base_ids")
    if "hook_embed" in source_cache:
        check_same_shape(source_cache["hook_embed"].shape[:2], base_ids.shape, "the source run", "base_ids")
    return base_ids


def _name(kind: str, layer: int) -> str:
    if kind not in RESIDUAL:
        raise ValueError(f"unknown activation {kind!r}; choose one of {RESIDUAL}")
    return f"blocks.{layer}.hook_{kind}"


# --------------------------------------------------------------------------- one patch
def patch(model, base_ids, source_cache: ActivationCache, name: str, where=...) -> np.ndarray:
    """Logits of ``base_ids`` run with ``source_cache[name][where]`` patched in; ``where`` indexes the array.

    ``where=...`` patches all of it; ``(slice(None), 3)`` position 3 of a (B, T, C) array;
    ``(slice(None), slice(None), 2)`` head 2 of ``hook_z`` (B, T, H, D).
    """
    base_ids = _check_pair(model, base_ids, source_cache)
    source = source_cache[name]

    def put(array):
        out = array.copy()
        out[where] = source[where]
        return out

    return run_with_hooks(model, base_ids, {name: put})


def patch_many(model, base_ids, source_cache: ActivationCache, names) -> np.ndarray:
    """Logits of ``base_ids`` with every activation in ``names`` replaced by the source run's."""
    base_ids = _check_pair(model, base_ids, source_cache)
    return run_with_hooks(model, base_ids, {n: (lambda a, name: source_cache[name]) for n in names})


# --------------------------------------------------------------------------- sweeps
def patch_residual(model, base_ids, source_cache: ActivationCache, metric: Metric, kind: str = "resid_pre",
                   positions: Optional[list] = None) -> np.ndarray:
    """Metric after patching ``blocks.{l}.hook_{kind}`` at one position: (L, T) (or (L, len(positions))).

    ``kind`` is one of ``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out``.
    """
    base_ids = _check_pair(model, base_ids, source_cache)
    L = model.config.n_layers
    T = base_ids.shape[1]
    positions = list(range(T)) if positions is None else list(positions)
    out = np.zeros((L, len(positions)))
    for layer in range(L):
        for j, t in enumerate(positions):
            logits = patch(model, base_ids, source_cache, _name(kind, layer), (slice(None), t))
            out[layer, j] = metric(logits)
    return out


def patch_heads(model, base_ids, source_cache: ActivationCache, metric: Metric) -> np.ndarray:
    """Metric after patching one head's output ``hook_z`` at every position: (L, H)."""
    base_ids = _check_pair(model, base_ids, source_cache)
    L, H = model.config.n_layers, model.config.n_heads
    out = np.zeros((L, H))
    for layer in range(L):
        for h in range(H):
            logits = patch(model, base_ids, source_cache, f"blocks.{layer}.attn.hook_z", (slice(None), slice(None), h))
            out[layer, h] = metric(logits)
    return out


def patch_heads_by_position(model, base_ids, source_cache: ActivationCache, metric: Metric) -> np.ndarray:
    """Metric after patching one head at one position: (L, T, H)."""
    base_ids = _check_pair(model, base_ids, source_cache)
    L, H = model.config.n_layers, model.config.n_heads
    T = base_ids.shape[1]
    out = np.zeros((L, T, H))
    for layer in range(L):
        for t in range(T):
            for h in range(H):
                logits = patch(model, base_ids, source_cache, f"blocks.{layer}.attn.hook_z", (slice(None), t, h))
                out[layer, t, h] = metric(logits)
    return out


def patching_experiment(model, clean_ids, corrupted_ids, metric: Metric) -> dict:
    """The usual first look, denoising: clean activations patched into the corrupted run.

    Returns ``{"clean", "corrupted"}`` metric values and normalised (0 = corrupted, 1 = clean)
    arrays ``resid_pre``, ``attn_out``, ``mlp_out`` (L, T) and ``heads`` (L, H).
    """
    clean_ids, corrupted_ids = check_pair(clean_ids, corrupted_ids)
    clean_logits, clean_cache = run_with_cache(model, clean_ids)
    corrupted_logits = run_with_hooks(model, corrupted_ids, {})
    clean, corrupted = metric(clean_logits), metric(corrupted_logits)
    out = {"clean": clean, "corrupted": corrupted}
    for kind in ("resid_pre", "attn_out", "mlp_out"):
        out[kind] = normalized(patch_residual(model, corrupted_ids, clean_cache, metric, kind), clean, corrupted)
    out["heads"] = normalized(patch_heads(model, corrupted_ids, clean_cache, metric), clean, corrupted)
    return out
