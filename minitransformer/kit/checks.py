"""The checks of the contract kit, each one question asked of a stage under one configuration.

Every check takes a `Setting` (the stage, one config, its inputs) and returns
``(passed, detail)``; `contract.check_stage` runs them over the matrix of
configurations and gathers the lines into a report. A check that crashes is a
failed check (the kit reports the exception), so one broken path never hides
the others.

Dimension letters: B batch, T positions, S key positions, C model width,
H heads, D head width, Dr the width of MLA's decoupled RoPE channel.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import numpy as np

from .gradcheck import gradcheck

CACHE_PREFILL = 2  # the KV-cache check prefills this many positions, then decodes one at a time


@dataclass
class Setting:
    """A stage under one configuration: what every check reads."""

    kind: str
    stage: object  # a core.registry.Variant (registered or built from a student's functions)
    config: object
    label: str
    positions: np.ndarray  # (T,)
    seed: int
    tol: float
    positional: object = None  # attention only: what the positional stage offers (registry.chosen)
    x32: np.ndarray = field(init=False)
    params32: dict = field(init=False)

    def __post_init__(self):
        rng = self.rng(0)
        self.x32 = rng.normal(size=(2, len(self.positions), self.config.d_model)).astype(np.float32)  # (B, T, C)
        self.params32 = check_params(self.stage.init(self.config, np.random.default_rng(self.seed)))

    def rng(self, salt: int) -> np.random.Generator:
        """A generator of its own for each use, so checks do not depend on each other's order."""
        return np.random.default_rng([self.seed, salt])

    def forward(self, params, x, positions=None, positional="chosen", **kw):
        """The stage's forward with the signature of its kind (``kv_cache``/``need_cache`` for attention)."""
        positions = self.positions if positions is None else positions
        if self.kind == "positional":
            return self.stage.forward(params, x, positions, self.config, need_cache=True)
        if self.kind == "attention":
            positional = self.positional if positional == "chosen" else positional
            cache = {"kv_cache": kw["kv_cache"]} if kw.get("kv_cache") is not None else {}  # only when decoding
            return self.stage.forward(params, x, self.config, positions, need_cache=kw.get("need_cache", True),
                                      positional=positional, **cache)
        return self.stage.forward(params, x, self.config, need_cache=True)

    def params64(self, salt: int = 1) -> dict:
        """float64 parameters moved away from their init (zero biases and unit gains hide mistakes)."""
        rng = self.rng(salt)
        return {k: v.astype(np.float64) + rng.normal(0, 0.1, v.shape) for k, v in self.params32.items()}


class ContractError(ValueError):
    """A stage breaks the contract before any check can run (the kit reports its message alone)."""


def check_params(params) -> dict:
    """``params`` if it is what every check reads, a flat dict name -> numpy array; else a `ContractError`."""
    if not isinstance(params, dict):
        raise ContractError(f"init must return a flat dict of arrays (name -> array; {{}} for none), "
                            f"got {type(params).__name__}")
    for name, a in params.items():
        if not isinstance(a, np.ndarray):
            raise ContractError(f"init must return a flat dict of arrays; {name!r} is a {type(a).__name__} "
                                "(give every array its own name at the top level)")
    return params


def _has_backward(s: Setting) -> bool:
    return callable(getattr(s.stage, "backward", None))


NO_BACKWARD = "backward is missing: write backward(params, cache, dy) -> (dx, grads)"


# --------------------------------------------------------------------------- every kind
def shapes(s: Setting):
    y, _ = s.forward(s.params32, s.x32)
    ok = y.shape == s.x32.shape  # (the params were checked when the setting was made: `check_params`)
    detail = f"x {s.x32.shape} -> y {y.shape}"
    bias = getattr(s.stage, "score_bias", None)
    if s.kind == "positional" and bias is not None:  # 2 queries against 6 keys: T and S differ on purpose
        T, S = 2, len(s.positions)
        b = np.asarray(bias(s.positions[-T:], s.positions, s.config))
        ok = ok and b.shape == (s.config.n_heads, T, S)
        detail += f"; score_bias {b.shape} (want (H, T, S) = {(s.config.n_heads, T, S)})"
    return ok, detail


def float32(s: Setting):
    y, _ = s.forward(s.params32, s.x32)
    bad = [n for n, a in s.params32.items() if a.dtype != np.float32]
    ok, detail = y.dtype == np.float32 and not bad, f"y is {y.dtype}" + (f"; params not float32: {bad}" if bad else "")
    rotate = getattr(s.stage, "rotate", None)
    if s.kind == "positional" and rotate is not None:
        r = rotate(s.x32.reshape(2, len(s.positions), s.config.n_heads, -1).transpose(0, 2, 1, 3), s.positions, s.config)
        ok, detail = ok and r.dtype == np.float32, detail + f"; rotate gives {r.dtype}"
    return ok, detail


def gradients(s: Setting):
    if not _has_backward(s):
        return False, NO_BACKWARD
    rng = s.rng(2)
    p64, x64 = s.params64(), s.x32.astype(np.float64)
    y, cache = s.forward(p64, x64)
    dy = rng.normal(size=y.shape)  # random: with ones, a backward that mixes up positions could pass
    dx, grads = s.stage.backward(p64, cache, dy.copy())
    if set(grads) != set(p64):
        return False, f"grads have keys {sorted(grads)}, params {sorted(p64)}"
    report = gradcheck(lambda a: s.forward({k: a[k] for k in p64}, a["x"])[0], {"x": x64, **p64},
                       {"x": dx, **grads}, dy, tol=s.tol, max_entries=20, rng=rng)
    return report.ok, _describe(report, s.tol)


def _describe(report, tol) -> str:
    worst = report.worst  # the array furthest from passing; a zero gradient's rounding noise does not count
    n = f"{len(report.checks)} array{'s' * (len(report.checks) != 1)}"
    if worst.max_abs_diff <= worst.atol:
        biggest = max(c.max_abs_diff for c in report.checks)
        return f"{n}, every entry within {worst.atol:.0e} (max |diff| {biggest:.1e})"
    return f"{n}, worst {worst.name}: relative error {worst.rel_error:.1e} (tolerance {tol:.0e})"


def determinism(s: Setting):
    again = s.stage.init(s.config, np.random.default_rng(s.seed))
    same_init = set(again) == set(s.params32) and all(np.array_equal(again[k], s.params32[k]) for k in s.params32)
    y1, _ = s.forward(s.params32, s.x32)
    y2, _ = s.forward(s.params32, s.x32)
    same = bool(np.array_equal(y1, y2))
    return same_init and same, f"same seed, same params: {same_init}; same input, same output: {same}"


def no_mutation(s: Setting):
    """forward and backward leave x, params and dy as they were (dy random: a clip to [-1, 1] shows)."""
    x, params = s.x32.copy(), {k: v.copy() for k, v in s.params32.items()}
    x_copy, p_copy = x.copy(), {k: v.copy() for k, v in params.items()}
    y, cache = s.forward(params, x)
    changed = ["x"] if not np.array_equal(x, x_copy) else []
    if _has_backward(s):
        dy = s.rng(3).normal(size=y.shape).astype(y.dtype)  # (B, T, C), entries beyond ±1 too
        dy_copy = dy.copy()
        s.stage.backward(params, cache, dy)
        changed += ["dy"] if not np.array_equal(dy, dy_copy) else []
    changed += [n for n in p_copy if not np.array_equal(p_copy[n], params[n])]
    rotate, unrotate = getattr(s.stage, "rotate", None), getattr(s.stage, "rotate_backward", None)
    if s.kind == "positional" and rotate is not None:
        q = s.rng(4).normal(size=(2, s.config.n_heads, len(s.positions), s.config.d_head)).astype(np.float32)
        q_copy = q.copy()
        rotate(q, s.positions, s.config)
        changed += ["rotate's x"] if not np.array_equal(q, q_copy) else []
        if unrotate is not None:
            unrotate(q, s.positions, s.config)
            changed += ["rotate_backward's dy"] if not np.array_equal(q, q_copy) else []
    if changed:
        return False, f"changed in place: {changed} (a caller reuses them: copy before writing)"
    return True, "x, params" + (" and random dy" if _has_backward(s) else "") + " unchanged"


# --------------------------------------------------------------------------- attention
def causality(s: Setting):
    T = len(s.positions)
    x2 = s.x32.copy()
    x2[:, T // 2:] = s.rng(5).normal(size=x2[:, T // 2:].shape)
    y1, _ = s.forward(s.params32, s.x32)
    y2, _ = s.forward(s.params32, x2)
    diff = float(np.abs(y1[:, :T // 2] - y2[:, :T // 2]).max())
    return diff == 0.0, f"changing tokens {T // 2}.. moved earlier outputs by {diff:.1e}"


def stability(s: Setting):
    with np.errstate(over="ignore", invalid="ignore"):  # an unstable softmax overflows: that is the finding
        y, _ = s.forward(s.params32, s.x32 * 1000.0)
    finite = bool(np.all(np.isfinite(y)))
    return finite, "finite outputs for inputs x1000" if finite else "inf/nan for large inputs (subtract the row max before exp?)"


def kv_cache(s: Setting):
    """Prefill, then decode one position at a time into the variant's own cache: the full forward's output."""
    make = s.stage.extras.get("make_cache")
    if make is None:
        return None, "skipped: no make_cache(config, batch_size, max_len), so the model decodes without a cache"
    B, T = s.x32.shape[:2]
    cache = make(s.config, B, T)
    full, _ = s.forward(s.params32, s.x32)
    try:
        k = CACHE_PREFILL
        parts = [s.forward(s.params32, s.x32[:, :k], s.positions[:k], kv_cache=cache, need_cache=False)[0]]
        for t in range(k, T):
            parts.append(s.forward(s.params32, s.x32[:, t:t + 1], s.positions[t:t + 1], kv_cache=cache,
                                   need_cache=False)[0])
    except Exception as exc:
        return False, f"decoding into make_cache's {type(cache).__name__} raised {type(exc).__name__}: {exc}"
    diff = float(np.abs(np.concatenate(parts, axis=1) - full).max())
    return diff < 1e-5, f"{type(cache).__name__}: prefill {k} + one at a time vs full forward: max |diff| {diff:.1e}"


def positional_seam(s: Setting):
    """Attention consumes what the positional stage offers: it rotates with ``rotate``, un-rotates with
    ``rotate_backward``, and adds ``score_bias``, whatever the variant is called."""
    calls = {"rotate": 0, "rotate_backward": 0, "score_bias": 0}
    chosen = s.positional

    def counted(name, fn):
        def wrapper(*args):
            calls[name] += 1
            return fn(*args)
        return wrapper

    def bias(q_positions, k_positions, config):  # ALiBi-like: a far key costs more, per head
        calls["score_bias"] += 1
        slopes = 2.0 ** -np.arange(1, config.n_heads + 1)  # (H,)
        distance = np.asarray(q_positions)[:, None] - np.asarray(k_positions)[None, :]  # (T, S)
        return -slopes[:, None, None] * np.maximum(distance, 0)[None]  # (H, T, S)

    rotary = getattr(chosen, "rotate", None) is not None
    probe = types.SimpleNamespace(
        name="kit_probe", score_bias=bias,
        rotate=counted("rotate", chosen.rotate) if rotary else None,
        rotate_backward=counted("rotate_backward", chosen.rotate_backward) if rotary else None)
    plain, _ = s.forward(s.params32, s.x32)
    y, cache = s.forward(s.params32, s.x32, positional=probe)
    problems = []
    if calls["score_bias"] == 0 or np.allclose(y, plain):
        problems.append("score_bias not applied (add positional.score_bias(q_positions, k_positions, config) "
                        "to the scores)")
    if rotary and calls["rotate"] == 0:
        problems.append("positional.rotate never called (rotate q and k with it)")
    if rotary and _has_backward(s):
        s.stage.backward(s.params32, cache, s.rng(6).normal(size=y.shape).astype(y.dtype))
        if calls["rotate_backward"] == 0:
            problems.append("positional.rotate_backward never called in backward")
    if problems:
        return False, "; ".join(problems)
    used = "rotate, rotate_backward and score_bias" if rotary else "score_bias"
    return True, f"{used} used"


# --------------------------------------------------------------------------- positional
def rotation_gradient(s: Setting):
    """``rotate_backward`` against finite differences of ``rotate``, on a head (B, H, T, D) and on MLA's
    shared positional key (B, T, Dr)."""
    rotate, unrotate = s.stage.rotate, s.stage.rotate_backward
    if unrotate is None:
        return False, "rotate_backward is missing: attention cannot be trained (give the inverse rotation)"
    rng = s.rng(7)
    T = len(s.positions)
    worst = []
    for shape in ((2, s.config.n_heads, T, s.config.d_head), (2, T, 2)):
        x = rng.normal(size=shape)
        dy = rng.normal(size=shape)
        dx = unrotate(dy.copy(), s.positions, s.config)
        if np.shape(dx) != shape:
            return False, f"rotate_backward gave shape {np.shape(dx)} for dy {shape}"
        report = gradcheck(lambda a: rotate(a["x"], s.positions, s.config), {"x": x}, {"x": dx}, dy,
                           tol=s.tol, max_entries=20, rng=rng)
        worst.append((report.ok, report.worst.rel_error, shape))
    ok = all(w[0] for w in worst)
    err, shape = max((w[1], w[2]) for w in worst)
    return ok, f"worst relative error {err:.1e} (x {shape}; tolerance {s.tol:.0e})"


def context_boundary(s: Setting):
    L, T = s.config.context_length, len(s.positions)
    y, _ = s.forward(s.params32, s.x32, np.arange(L - T, L))
    ok_last = y.shape == s.x32.shape and bool(np.all(np.isfinite(y)))
    try:
        s.forward(s.params32, s.x32, np.arange(L - T + 1, L + 1))
        beyond = "accepted"
    except ValueError:
        beyond = "refused with ValueError"
    has_table = bool(s.params32) or s.config.positional == "sinusoidal"
    ok = ok_last and (beyond == "refused with ValueError" or not has_table)
    hint = "" if ok else " (a table of positions must refuse what it has no row for)"
    return ok, f"positions up to {L - 1}: {'ok' if ok_last else 'failed'}; position {L}: {beyond}{hint}"


# --------------------------------------------------------------------------- against a reference
def matches_reference(s: Setting, reference):
    """Forward and backward equal to ``reference``'s on the same float64 inputs, parameters and dy."""
    p64, x64 = s.params64(), s.x32.astype(np.float64)
    other = Setting(s.kind, reference, s.config, s.label, s.positions, s.seed, s.tol, s.positional)
    y, cache = s.forward(p64, x64)
    y_ref, cache_ref = other.forward(p64, x64)
    diffs = {"y": _rel_diff(y, y_ref)}
    if _has_backward(s) and _has_backward(other):
        dy = s.rng(8).normal(size=y.shape)
        dx, grads = s.stage.backward(p64, cache, dy.copy())
        dx_ref, grads_ref = reference.backward(p64, cache_ref, dy.copy())
        if set(grads) != set(grads_ref):
            return False, f"grads have keys {sorted(grads)}, the reference's {sorted(grads_ref)}"
        diffs["dx"] = _rel_diff(dx, dx_ref)
        diffs.update({f"d{k}": _rel_diff(grads[k], grads_ref[k]) for k in grads})
    rotate, rotate_ref = getattr(s.stage, "rotate", None), getattr(reference, "rotate", None)
    if s.kind == "positional" and rotate is not None and rotate_ref is not None:
        q = s.rng(9).normal(size=(2, s.config.n_heads, len(s.positions), s.config.d_head))
        diffs["rotate"] = _rel_diff(rotate(q, s.positions, s.config), rotate_ref(q, s.positions, s.config))
        if s.stage.rotate_backward is not None and reference.rotate_backward is not None:
            diffs["rotate_backward"] = _rel_diff(s.stage.rotate_backward(q, s.positions, s.config),
                                                 reference.rotate_backward(q, s.positions, s.config))
    name, worst = max(diffs.items(), key=lambda kv: kv[1])
    n_grads = len(diffs) - sum(1 for k in diffs if k in ("y", "dx", "rotate", "rotate_backward"))
    compared = [k for k in diffs if k in ("y", "dx", "rotate", "rotate_backward")] + ([f"{n_grads} gradients"] * bool(n_grads))
    return worst <= 1e-8, f"vs {reference.name}: {', '.join(compared)}; worst {name}, relative difference {worst:.1e}"


def _rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max(initial=0.0) / max(np.abs(b).max(initial=0.0), 1.0))
