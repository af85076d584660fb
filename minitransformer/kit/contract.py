"""The stage contract kit: is a stage (the library's or a student's) right?

`check_stage(kind, variant)` runs the contract every stage must keep (shapes,
dtypes, gradients against finite differences, determinism, no mutation of its
inputs, causality, stability, the KV cache, the positional seam, the context
boundary) under a matrix of configurations that reaches every path a mistake
can hide in (`kit.matrix`), and returns a readable report: one line per check,
naming the configurations it ran under.

    >>> report = check_stage("ffn", "gelu")
    >>> report.ok, report.labels
    (True, ['bias', 'no bias'])
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..core import registry
from . import checks as C
from . import matrix

# the checks of each kind, in the order they are reported
COMMON = (("shapes", C.shapes), ("float32 in -> float32 out", C.float32), ("gradient check", C.gradients),
          ("determinism", C.determinism), ("no mutation of inputs", C.no_mutation))
BY_KIND = {
    "attention": (("causality", C.causality), ("stability", C.stability), ("KV cache", C.kv_cache),
                  ("positional seam", C.positional_seam)),
    "positional": (("context boundary", C.context_boundary),),
    "ffn": (),
}
T = 6  # positions per check: small enough for finite differences, long enough for a causal mask to matter


@dataclass
class Check:
    """One line of a `StageReport`: a check under one configuration (``config``, its label).

    ``passed`` is None when the check did not apply (shown as SKIP, not counted as a failure).
    """

    name: str
    passed: Optional[bool]
    detail: str
    config: str = ""

    @property
    def status(self) -> str:
        return "SKIP" if self.passed is None else "PASS" if self.passed else "FAIL"

    def __str__(self) -> str:
        return f"{self.status}  {self.name:<26} [{self.config}] {self.detail}"


@dataclass
class StageReport:
    """The result of `check_stage`: one `Check` per check and configuration; ``report.ok`` when none failed."""

    kind: str
    variant: str
    checks: list
    labels: list  # the configurations, in the order they ran

    @property
    def ok(self) -> bool:
        return all(c.passed is not False for c in self.checks)

    def failed(self) -> list:
        """The checks that failed, each under its configuration."""
        return [c for c in self.checks if c.passed is False]

    def __str__(self) -> str:
        """One line per check; a check that failed under some configurations gets a line for each of them."""
        n = len(self.labels)
        head = (f"check_stage({self.kind!r}, {self.variant!r}): {'all passed' if self.ok else 'FAILED'} "
                f"under {n} config{'s' * (n != 1)}: {', '.join(self.labels)}")
        lines = [head]
        for name in dict.fromkeys(c.name for c in self.checks):
            group = [c for c in self.checks if c.name == name]
            bad = [c for c in group if c.passed is not True]
            lines += [f"  {c}" for c in bad]
            good = [c for c in group if c.passed is True]
            if good:  # one line for the configs it passed under, with the last one's detail
                where = f"all {n}" if len(good) == n > 1 else ", ".join(c.config for c in good)
                last = good[-1]
                same = all(c.detail == last.detail for c in good)
                detail = last.detail if same or len(good) == 1 else f"{last.detail} (under {last.config})"
                lines.append(f"  {Check(name, True, detail, where)}")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython shows the report, not a dataclass dump
        p.text(str(self))

    def assert_ok(self) -> "StageReport":
        """Raise an AssertionError carrying the whole report if a check failed (for pytest)."""
        if not self.ok:
            raise AssertionError(str(self))
        return self


def as_variant(kind: str, variant) -> registry.Variant:
    """A `core.registry.Variant` for a registered name, a Variant, or a student's module/object/dict of functions."""
    if isinstance(variant, str):  # a registered name: the library's own, or one a student registered
        return registry.get(kind, variant)
    if isinstance(variant, registry.Variant):
        return variant
    fns = types.SimpleNamespace(**variant) if isinstance(variant, dict) else variant
    missing = [f for f in ("init", "forward") if not callable(getattr(fns, f, None))]
    if missing:
        raise ValueError(f"the {kind} variant is missing {missing}: give init(config, rng) and "
                         "forward(...) (and backward(params, cache, dy) to train with it)")
    extras = {k: getattr(fns, k) for k in registry.EXTRAS if callable(getattr(fns, k, None))}
    registered = _registered_as(kind, fns.init, fns.forward, getattr(fns, "backward", None), extras)
    if registered is not None:  # the same functions as a registered variant: that variant, by its name
        return registered
    name = getattr(fns, "__name__", None) or f"a {type(variant).__name__} of functions"
    return registry.Variant(kind, name, fns.init, fns.forward, getattr(fns, "backward", None), extras)


def _registered_as(kind: str, init, forward, backward, extras: dict) -> Optional[registry.Variant]:
    """The registered variant of ``kind`` made of exactly these functions, if there is one."""
    for name in registry.names(kind):
        v = registry.get(kind, name)
        theirs = {k: f for k, f in v.extras.items() if callable(f)}
        if (v.init, v.forward, v.backward) == (init, forward, backward) and theirs == extras:
            return v
    return None


def _reference_variant(kind: str, reference) -> registry.Variant:
    """A registered name compares against that variant's reference path (its equations) when it has one."""
    kind = matrix.resolve_kind(kind)
    if isinstance(reference, str):
        variant = registry.get(kind, reference)
        return registry.reference_for(kind, reference) if variant.extras.get("reference") is not None else variant
    return as_variant(kind, reference)


def check_stage(kind: str, variant, config=None, seed: int = 0, tol: float = 1e-6, reference=None) -> StageReport:
    """Run the stage contract on ``variant`` under a matrix of configs; return a report, one line per check.

    Args:
        kind: ``"positional"``, ``"attention"`` or ``"ffn"``, the kinds of `core.registry.KINDS`
            (``"feedforward"``, the stage's module name, is accepted for ``"ffn"``).
        variant: a registered name (``"rope"``, ``"mha"``, ``"mla"``, ``"swiglu"``, or one you
            registered), or your stage: a module, object or dict with ``init(config, rng)`` (returning
            a flat dict name -> array), ``forward(...)`` and ``backward(params, cache, dy)`` with the
            signatures of the library's stage, and the extras of its kind (``rotate``/``rotate_backward``/
            ``score_bias`` for positions, ``make_cache`` for attention). Functions that are a registered
            variant's are reported under its name.
        config: a `ModelConfig` or a list of them to run under instead of the default matrix
            (`kit.matrix.default_configs`: for attention learned and rotary positions × 4, 2
            and 1 key/value heads, MLA with and without query compression; positions at the start
            and at the end of the context; ffn with and without biases). A registered variant's
            name replaces the config's choice for ``kind``.
        seed: the seed of parameters, inputs and upstream gradients.
        tol: the relative error the gradient checks accept (float64 finite differences).
        reference: a variant (name or functions, as ``variant``) computing the same function; adds a
            "matches reference" line comparing forward and backward on the same inputs. A registered
            name with a reference path (``"mha"``, ``"mla"``) compares against that readable path.

    Checks: shapes and dtypes; float32 in -> float32 out; the backward against finite
    differences (float64, random upstream gradient; the worst array and its error);
    determinism; x, params and a random dy left unchanged; for attention causality,
    stability with large inputs, decoding into the variant's own KV cache (``make_cache``)
    equal to the full forward, and the positional seam (``rotate``/``rotate_backward``
    and ``score_bias`` are used); for positional encodings the rotation's gradient and the
    context boundary.

    >>> check_stage("attention", "mha").ok
    True
    """
    kind = matrix.resolve_kind(kind)
    stage = as_variant(kind, variant)
    ref = _reference_variant(kind, reference) if reference is not None else None
    if config is None:
        configs = matrix.default_configs(kind, stage)
    else:
        configs = matrix.as_list(config)
        if isinstance(variant, str):
            configs = [c.replace(**{kind: variant}) if getattr(c, kind) != variant else c for c in configs]
    runs = []
    for cfg in configs:
        words = matrix.label(kind, cfg, stage)
        if kind == "positional":  # at the start, and ending at the context boundary
            L = cfg.context_length
            if L < T:
                raise ValueError(f"the kit checks positions in windows of {T}, but this config has "
                                 f"context_length={L}: give a config with context_length >= {T}")
            runs += [(cfg, f"{words} @0..{T - 1}".strip(), np.arange(T)),
                     (cfg, f"{words} @{L - T}..{L - 1}".strip(), np.arange(L - T, L))]
        else:
            runs.append((cfg, words or "default", np.arange(T)))
    labels = [r[1] for r in runs]
    if len(set(labels)) < len(labels):  # the user's configs may differ in what labels leave out
        labels = [f"{w} #{i}" for i, w in enumerate(labels)]

    todo = COMMON + BY_KIND[kind]
    if kind == "positional" and stage.rotate is not None:
        todo += (("rotation gradient", C.rotation_gradient),)
    if ref is not None:
        todo += (("matches reference", lambda s: C.matches_reference(s, ref)),)
    report = StageReport(kind, stage.name, [], labels)
    for (cfg, _, positions), lab in zip(runs, labels):
        try:
            positional = registry.chosen("positional", cfg) if kind == "attention" else None
            setting = C.Setting(kind, stage, cfg, lab, positions, seed, tol, positional)
        except Exception as exc:  # init itself failed: every check of this config fails with its message
            report.checks += [Check(name, False, _crash(exc), lab) for name, _ in todo]
            continue
        for name, fn in todo:
            report.checks.append(_run(name, fn, setting))
    return report


def _run(name: str, fn, setting) -> Check:
    try:
        passed, detail = fn(setting)
    except Exception as exc:  # a crash is a failed check, reported with its message
        passed, detail = False, _crash(exc)
    return Check(name, None if passed is None else bool(passed), detail, setting.label)


def _crash(exc: Exception) -> str:
    if isinstance(exc, C.ContractError):  # the kit's own finding: its message is the reason
        return str(exc)
    detail = f"raised {type(exc).__name__}: {exc}"
    if isinstance(exc, TypeError) and "positional" in str(exc):
        detail += " (attention's forward takes positional=, the chosen positional variant)"
    return detail
