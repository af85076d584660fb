"""Checking a hand-written backward against finite differences.

A backward pass is checked the way one checks a derivative on paper: nudge each
input a little, see how the output moves, and compare with what backward said.
The loss used is ``sum(y * dy)`` with a *random* upstream gradient ``dy``: with
``y.sum()`` every output would count equally, and a backward that swaps or
transposes output positions could still pass.

    >>> import numpy as np
    >>> from minitransformer.core import nn
    >>> rng = np.random.default_rng(0)
    >>> x, W = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    >>> dy = rng.normal(size=(3, 2))
    >>> dx, dW, _ = nn.linear_backward(dy, x, W)
    >>> report = gradcheck(lambda a: nn.linear_forward(a["x"], a["W"])[0], {"x": x, "W": W}, {"x": dx, "W": dW}, dy)
    >>> report.ok
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..core.tree import flatten, to_float64
from ..model import backward as model_backward
from ..model import forward as model_forward
from ..model import init_params


@dataclass
class GradCheck:
    """The result for one array: its relative error and a few values side by side."""

    name: str
    rel_error: float
    max_abs_diff: float
    checked: int
    analytic: np.ndarray
    numeric: np.ndarray
    tol: float
    atol: float = 1e-8

    @property
    def ok(self) -> bool:
        # note: a gradient that is truly zero (e.g. of the key bias, which shifts every score
        # of a query equally and so cancels in the softmax) has only rounding noise on both
        # sides; its relative error is meaningless, so an absolute floor decides instead.
        return self.rel_error <= self.tol or self.max_abs_diff <= self.atol

    @property
    def negligible(self) -> bool:
        """Whether the gradient itself is below ``atol`` at every checked entry, on both sides:
        a truly zero gradient, whose relative error is only rounding noise."""
        return max(np.abs(self.analytic).max(initial=0.0), np.abs(self.numeric).max(initial=0.0)) <= self.atol

    def __str__(self) -> str:
        lines = [f"{self.name}: {'OK' if self.ok else 'NOT OK'}  rel error {self.rel_error:.2e}, "
                 f"max |diff| {self.max_abs_diff:.2e} over {self.checked} entries"]
        for a, n in list(zip(self.analytic, self.numeric))[:5]:
            flag = "OK" if abs(a - n) <= self.tol * max(abs(a), abs(n), 1.0) else "NOT OK"
            lines.append(f"    {flag:>6}  analytic {a: .8e}  numeric {n: .8e}")
        return "\n".join(lines)


@dataclass
class GradReport:
    """All arrays of one check; ``str(report)`` prints llm.c-style lines, worst array last."""

    checks: list[GradCheck]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def worst(self) -> GradCheck:
        """The array furthest from passing: failures first, then the largest relative error (a
        `negligible`, truly zero, gradient counts as error 0: its relative error is noise)."""
        return max(self.checks, key=lambda c: (not c.ok, 0.0 if c.negligible else c.rel_error))

    @property
    def max_rel_error(self) -> float:
        return self.worst.rel_error

    def __str__(self) -> str:
        body = "\n".join(str(c) for c in self.checks)
        return f"{body}\nworst: {self.worst.name} rel error {self.worst.rel_error:.2e} -> {'OK' if self.ok else 'NOT OK'}"


def gradcheck(
    fn: Callable[[dict], np.ndarray],
    arrays: dict[str, np.ndarray],
    analytic: dict[str, np.ndarray],
    dy: np.ndarray,
    eps: float = 6e-6,
    tol: float = 1e-6,
    atol: float = 1e-8,
    max_entries: int = 40,
    rng: Optional[np.random.Generator] = None,
) -> GradReport:
    """Compare analytic gradients with central finite differences of ``sum(fn(arrays) * dy)``.

    Args:
        fn: maps the dict of arrays to the output y (float64 throughout).
        arrays: the inputs to perturb, by name (float64).
        analytic: the gradients backward returned, same names and shapes.
        dy: the upstream gradient, the shape of y.
        eps: the finite-difference step. The default is about the cube root of float64's machine
            epsilon, the usual choice for central differences: their truncation error grows as
            eps² and their rounding error as 1/eps, and this balances the two (a step of 1e-6
            leaves ten times more rounding noise, about 1e-8 on a zero gradient of the toy model).
        tol: the largest acceptable relative error ``|a - n| / max(|a|, |n|)`` (as vectors).
        atol: an array also passes if no entry differs by more than this (for zero gradients).
        max_entries: check at most this many entries per array (chosen at random).

    Returns:
        A `GradReport`; ``report.ok`` is True when every array is within ``tol``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    checks = []
    for name, arr in arrays.items():
        if arr.dtype != np.float64:
            raise ValueError(f"gradcheck needs float64 arrays, but {name!r} is {arr.dtype}")
        grad = analytic[name]
        if grad.shape != arr.shape:
            raise ValueError(f"gradient of {name!r} has shape {grad.shape}, the array has {arr.shape}")
        flat = arr.reshape(-1)  # a view: perturbing it perturbs arr
        idx = np.arange(flat.size) if flat.size <= max_entries else rng.choice(flat.size, max_entries, replace=False)
        numeric = np.empty(len(idx))
        for k, i in enumerate(idx):
            old = flat[i]
            flat[i] = old + eps
            plus = float(np.sum(fn(arrays) * dy))
            flat[i] = old - eps
            minus = float(np.sum(fn(arrays) * dy))
            flat[i] = old
            numeric[k] = (plus - minus) / (2 * eps)
        a = grad.reshape(-1)[idx]
        diff = np.abs(a - numeric)
        scale = max(np.linalg.norm(a), np.linalg.norm(numeric), 1e-12)
        rel = float(np.linalg.norm(a - numeric) / scale)
        checks.append(GradCheck(name, rel, float(diff.max(initial=0.0)), len(idx), a, numeric, tol, atol))
    return GradReport(checks)


def gradcheck_model(config, seed: int = 0, batch: int = 2, T: int = 6, max_entries: int = 6,
                    tol: float = 1e-6) -> GradReport:
    """The whole model's backward against finite differences, in float64, with a random upstream gradient.

    Parameters are moved away from their initial values first (zero biases and unit gains hide
    mistakes), then every parameter array of the model is checked (``max_entries`` entries each).

    >>> from minitransformer.core.config import ModelConfig
    >>> gradcheck_model(ModelConfig.preset("toy")).ok
    True
    """
    rng = np.random.default_rng(seed)
    params = to_float64(init_params(config, rng))
    flat_p = flatten(params)
    for a in flat_p.values():
        a += rng.normal(0, 0.1, a.shape)
    ids = rng.integers(0, config.vocab_size, size=(batch, T))
    logits, cache = model_forward(params, config, ids, need_cache=True)
    dlogits = rng.normal(size=logits.shape)
    flat_g = flatten(model_backward(params, config, cache, dlogits))
    if set(flat_g) != set(flat_p):
        raise ValueError(f"backward returned gradients for {sorted(set(flat_g) ^ set(flat_p))[:5]} "
                         "that do not match the parameters")
    # note: the flat arrays are views into ``params``, so perturbing them perturbs the model
    return gradcheck(lambda a: model_forward(params, config, ids, need_cache=False)[0], flat_p, flat_g,
                     dlogits, tol=tol, max_entries=max_entries, rng=rng)
