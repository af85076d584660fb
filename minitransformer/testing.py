"""Checking a hand-written backward against finite differences.

A backward pass is checked the way one checks a derivative on paper: nudge each
input a little, see how the output moves, and compare with what backward said.
The loss used is ``sum(y * dy)`` with a *random* upstream gradient ``dy``: with
``y.sum()`` every output would count equally, and a backward that swaps or
transposes output positions could still pass.

    >>> import numpy as np
    >>> from minitransformer import nn
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
        """The array furthest from passing (one that passes only through ``atol``, a zero
        gradient, counts as error 0)."""
        return max(self.checks, key=lambda c: (not c.ok, c.rel_error if c.max_abs_diff > c.atol else 0.0))

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
    eps: float = 1e-6,
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
        eps: the finite-difference step.
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

    >>> from minitransformer.config import ModelConfig
    >>> gradcheck_model(ModelConfig.preset("toy")).ok
    True
    """
    from . import model as model_mod

    rng = np.random.default_rng(seed)
    params = _to_float64(model_mod.init_params(config, rng))
    flat_p = model_mod.flatten(params)
    for a in flat_p.values():
        a += rng.normal(0, 0.1, a.shape)
    ids = rng.integers(0, config.vocab_size, size=(batch, T))
    logits, cache = model_mod.forward(params, config, ids, need_cache=True)
    dlogits = rng.normal(size=logits.shape)
    flat_g = model_mod.flatten(model_mod.backward(params, config, cache, dlogits))
    if set(flat_g) != set(flat_p):
        raise ValueError(f"backward returned gradients for {sorted(set(flat_g) ^ set(flat_p))[:5]} "
                         "that do not match the parameters")
    # note: the flat arrays are views into ``params``, so perturbing them perturbs the model
    return gradcheck(lambda a: model_mod.forward(params, config, ids, need_cache=False)[0], flat_p, flat_g,
                     dlogits, tol=tol, max_entries=max_entries, rng=rng)


def _to_float64(tree):
    if isinstance(tree, dict):
        return {k: _to_float64(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_to_float64(v) for v in tree]
    return tree.astype(np.float64)


# =========================================================================== the stage contract kit
@dataclass
class Check:
    """One line of a `StageReport`."""

    name: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name:<22} {self.detail}"


@dataclass
class StageReport:
    """The result of `check_stage`: one `Check` per line; ``report.ok`` when all passed."""

    kind: str
    variant: str
    checks: list

    @property
    def ok(self) -> bool:
        return all(c.passed for c in self.checks)

    def __str__(self) -> str:
        lines = [f"check_stage({self.kind!r}, {self.variant!r}): {'all passed' if self.ok else 'FAILED'}"]
        return "\n".join(lines + [f"  {c}" for c in self.checks])

    def _repr_pretty_(self, p, cycle) -> None:  # IPython shows the report, not a dataclass dump
        p.text(str(self))

    def assert_ok(self) -> "StageReport":
        """Raise an AssertionError carrying the whole report if a check failed (for pytest)."""
        if not self.ok:
            raise AssertionError(str(self))
        return self


KINDS = ("positional", "attention", "feedforward")


def _resolve_variant(kind: str, variant, config):
    """(functions namespace, config, label) for a built-in name or a student's own functions."""
    import types

    from .config import ModelConfig

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    base = config or ModelConfig(vocab_size=32, context_length=12, d_model=16, n_layers=1, n_heads=4)
    if isinstance(variant, str):  # a registered name: the library's own, or one a student registered
        from . import registry

        field_name = {"positional": "positional", "attention": "attention", "feedforward": "ffn"}[kind]
        registered = registry.get(field_name, variant)
        cfg = base.replace(**{field_name: variant}) if variant != getattr(base, field_name) else base
        fns = types.SimpleNamespace(init=registered.init, forward=registered.forward, backward=registered.backward)
        return fns, cfg, variant
    fns = types.SimpleNamespace(**variant) if isinstance(variant, dict) else variant
    missing = [f for f in ("init", "forward") if not callable(getattr(fns, f, None))]
    if missing:
        raise ValueError(f"the {kind} variant is missing {missing}: give init(config, rng) and "
                         "forward(...) (and backward(params, cache, dy) to train with it)")
    return fns, base, getattr(variant, "__name__", type(variant).__name__)


def _call_forward(kind, fns, params, x, cfg, positions, **kw):
    if kind == "positional":
        return fns.forward(params, x, positions, cfg, need_cache=True)
    if kind == "attention":
        return fns.forward(params, x, cfg, positions, need_cache=kw.get("need_cache", True), kv_cache=kw.get("kv_cache"))
    return fns.forward(params, x, cfg, need_cache=True)


def check_stage(kind: str, variant, config=None, seed: int = 0, tol: float = 1e-6) -> StageReport:
    """Run the stage contract on ``variant`` and return a readable report, one line per check.

    Args:
        kind: ``"positional"``, ``"attention"`` or ``"feedforward"``.
        variant: a registered name (``"rope"``, ``"mha"``, ``"swiglu"``, or one registered with
            `minitransformer.registry`) or a student's stage:
            a module, object or dict with ``init(config, rng)``, ``forward(...)`` and
            ``backward(params, cache, dy)``, with the signatures of the library's stage.
        config: the `ModelConfig` to test with (default: a small one).

    Checks: shapes and dtypes; float32 in -> float32 out; the backward against finite
    differences (float64, random upstream gradient; the worst array and its error); for
    attention, causality, stability with large inputs, and KV-cache decoding equal to the
    full forward; for positional encodings, the context boundary; determinism; inputs
    left unchanged.

    >>> check_stage("attention", "mha").ok
    True
    """
    fns, cfg, label = _resolve_variant(kind, variant, config)
    checks: list[Check] = []

    def record(name: str, fn) -> None:
        try:
            passed, detail = fn()
        except Exception as exc:  # a crash is a failed check, reported with its message
            passed, detail = False, f"raised {type(exc).__name__}: {exc}"
        checks.append(Check(name, bool(passed), detail))

    rng = np.random.default_rng(seed)
    B, T, C = 2, 6, cfg.d_model
    positions = np.arange(T)
    x32 = rng.normal(size=(B, T, C)).astype(np.float32)
    params32 = fns.init(cfg, np.random.default_rng(seed))

    def shapes():
        y, cache = _call_forward(kind, fns, params32, x32, cfg, positions)
        ok = y.shape == x32.shape and all(isinstance(a, np.ndarray) for a in params32.values())
        return ok, f"x {x32.shape} -> y {y.shape}; params {sorted(params32)}"

    def float32():
        y, _ = _call_forward(kind, fns, params32, x32, cfg, positions)
        bad = [n for n, a in params32.items() if a.dtype != np.float32]
        return y.dtype == np.float32 and not bad, f"y is {y.dtype}" + (f"; params not float32: {bad}" if bad else "")

    def gradients():
        if not callable(getattr(fns, "backward", None)):
            return False, "backward is missing: write backward(params, cache, dy) -> (dx, grads)"
        p64 = {k: v.astype(np.float64) + rng.normal(0, 0.1, v.shape) for k, v in params32.items()}
        x64 = x32.astype(np.float64)
        y, cache = _call_forward(kind, fns, p64, x64, cfg, positions)
        dy = rng.normal(size=y.shape)
        dx, grads = fns.backward(p64, cache, dy)
        if set(grads) != set(p64):
            return False, f"grads have keys {sorted(grads)}, params {sorted(p64)}"
        report = gradcheck(lambda a: _call_forward(kind, fns, {k: a[k] for k in p64}, a["x"], cfg, positions)[0],
                           {"x": x64, **p64}, {"x": dx, **grads}, dy, tol=tol, max_entries=20)
        worst = report.worst
        if worst.max_abs_diff <= worst.atol:
            return report.ok, f"every array within {worst.atol:.0e} (worst {worst.name}: max |diff| {worst.max_abs_diff:.1e})"
        return report.ok, f"worst {worst.name}: relative error {worst.rel_error:.1e} (tolerance {tol:.0e})"

    def determinism():
        again = fns.init(cfg, np.random.default_rng(seed))
        same_init = all(np.array_equal(again[k], params32[k]) for k in params32)
        y1, _ = _call_forward(kind, fns, params32, x32, cfg, positions)
        y2, _ = _call_forward(kind, fns, params32, x32, cfg, positions)
        return same_init and np.array_equal(y1, y2), f"same seed, same params: {same_init}; same input, same output: {np.array_equal(y1, y2)}"

    def no_mutation():
        x_copy, p_copy = x32.copy(), {k: v.copy() for k, v in params32.items()}
        y, cache = _call_forward(kind, fns, params32, x32, cfg, positions)
        if callable(getattr(fns, "backward", None)):
            dy = np.ones_like(y)
            dy_copy = dy.copy()
            fns.backward(params32, cache, dy)
            changed_dy = not np.array_equal(dy, dy_copy)
        else:
            changed_dy = False
        changed = [n for n in p_copy if not np.array_equal(p_copy[n], params32[n])]
        changed += ["x"] if not np.array_equal(x_copy, x32) else []
        changed += ["dy"] if changed_dy else []
        return not changed, "inputs unchanged" if not changed else f"changed in place: {changed}"

    record("shapes", shapes)
    record("float32 in -> float32 out", float32)
    record("gradient check", gradients)
    record("determinism", determinism)
    record("no mutation of inputs", no_mutation)

    if kind == "attention":
        def causality():
            x2 = x32.copy()
            x2[:, T // 2:] = rng.normal(size=x2[:, T // 2:].shape)
            y1, _ = _call_forward(kind, fns, params32, x32, cfg, positions)
            y2, _ = _call_forward(kind, fns, params32, x2, cfg, positions)
            diff = float(np.abs(y1[:, :T // 2] - y2[:, :T // 2]).max())
            return diff == 0.0, f"changing tokens {T // 2}.. moved earlier outputs by {diff:.1e}"

        def stability():
            with np.errstate(over="ignore", invalid="ignore"):  # an unstable softmax overflows: that is the finding
                y, _ = _call_forward(kind, fns, params32, x32 * 1000.0, cfg, positions)
            return bool(np.all(np.isfinite(y))), "finite outputs for inputs x1000" if np.all(np.isfinite(y)) else "inf/nan for large inputs (subtract the row max before exp?)"

        def kv_cache():
            from .attention import KVCache

            cache = KVCache(1, B, cfg.context_length, cfg.kv_heads, cfg.d_head)
            full, _ = _call_forward(kind, fns, params32, x32, cfg, positions)
            parts = [_call_forward(kind, fns, params32, x32[:, :2], cfg, positions[:2], kv_cache=cache, need_cache=False)[0]]
            for t in range(2, T):
                parts.append(_call_forward(kind, fns, params32, x32[:, t:t + 1], cfg, positions[t:t + 1],
                                           kv_cache=cache, need_cache=False)[0])
            diff = float(np.abs(np.concatenate(parts, axis=1) - full).max())
            return diff < 1e-5, f"prefill 2 + one at a time vs full forward: max |diff| {diff:.1e}"

        record("causality", causality)
        record("stability", stability)
        record("KV cache", kv_cache)

    if kind == "positional":
        def boundary():
            L = cfg.context_length
            last = np.arange(L - T, L)
            y, _ = _call_forward(kind, fns, params32, x32, cfg, last)
            ok_last = y.shape == x32.shape and bool(np.all(np.isfinite(y)))
            try:
                _call_forward(kind, fns, params32, x32, cfg, np.arange(L - T + 1, L + 1))
                beyond = "accepted"
            except ValueError:
                beyond = "refused with ValueError"
            has_table = bool(params32) or cfg.positional == "sinusoidal"
            ok = ok_last and (beyond == "refused with ValueError" or not has_table)
            return ok, f"positions up to {L - 1}: {'ok' if ok_last else 'failed'}; position {L}: {beyond}"

        record("context boundary", boundary)

    return StageReport(kind, label, checks)
