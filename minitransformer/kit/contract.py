"""The stage contract kit: is a stage (the library's or a student's) right?

`check_stage(kind, variant)` runs the contract every stage must keep (shapes,
dtypes, gradients against finite differences, determinism, no mutation of its
inputs, causality, stability, the KV cache, the context boundary) and returns a
readable report, one line per check.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
import numpy as np

from ..core import registry
from ..core.config import ModelConfig
from .gradcheck import gradcheck


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
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    base = config or ModelConfig(vocab_size=32, context_length=12, d_model=16, n_layers=1, n_heads=4)
    if isinstance(variant, str):  # a registered name: the library's own, or one a student registered
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
            `minitransformer.core.registry`) or a student's stage:
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
            from ..attention.kv_cache import KVCache

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
