"""The contract kit: the library's stages pass its whole matrix, and each planted mistake is caught by name.

Every planted mistake is checked twice where it matters: the kit's default matrix
catches it, and the configuration the old kit ran alone would have let it through.
"""

import inspect
import math
import re
import types

import numpy as np
import pytest

from minitransformer import positional
from minitransformer.attention import mha, mla
from minitransformer.attention.kv_cache import KVCache, LatentKVCache
from minitransformer.core import registry
from minitransformer.core.config import ModelConfig
from minitransformer.feedforward import mlp
from minitransformer.kit import contract
from minitransformer.kit import check_stage
from minitransformer.kit.matrix import BASE

BUILTINS = [(kind, name) for kind in registry.KINDS for name in registry.names(kind)
            if registry.get(kind, name).builtin]


def failed(report):
    """{check name: [config labels it failed under]}."""
    out = {}
    for c in report.failed():
        out.setdefault(c.name, []).append(c.config)
    return out


# --------------------------------------------------------------------------- the library passes, over the matrix
@pytest.mark.parametrize("kind, name", BUILTINS, ids=lambda v: str(v))
def test_every_builtin_variant_passes_the_whole_matrix(kind, name):
    report = check_stage(kind, name)
    assert report.ok, str(report)
    assert not [c for c in report.checks if c.status == "SKIP"], str(report)
    assert len(report.checks) == len(report.labels) * len({c.name for c in report.checks})


def test_the_default_matrix_reaches_every_path():
    labels = check_stage("attention", "mha").labels
    assert labels == ["learned kv=4/4", "learned kv=2/4", "learned kv=1/4",
                      "rope kv=4/4", "rope kv=2/4", "rope kv=1/4 no bias"]
    assert check_stage("attention", "mla").labels == ["learned Dq=0 Dr=0", "learned Dq=8 Dr=0",
                                                      "rope Dq=0 Dr=2", "rope Dq=8 Dr=2"]
    assert check_stage("positional", "learned").labels == ["@0..5", "@6..11"]  # 6..11 ends at the context boundary
    assert check_stage("positional", "rope").labels == ["half @0..5", "half @6..11", "interleaved @0..5",
                                                         "interleaved @6..11"]
    assert check_stage("ffn", "gelu").labels == ["bias", "no bias"]


def test_rotary_configs_really_rotate_and_mla_decodes_with_its_latent_cache():
    for name in ("mha", "mla"):
        report = check_stage("attention", name)
        seam = {c.config: c.detail for c in report.checks if c.name == "positional seam"}
        for label, detail in seam.items():
            rotary = label.startswith("rope")
            assert ("rotate, rotate_backward" in detail) == rotary, (label, detail)
    kv = [c.detail for c in check_stage("attention", "mla").checks if c.name == "KV cache"]
    assert kv and all(d.startswith("LatentKVCache") for d in kv)


def test_kinds_come_from_the_registry():
    assert check_stage("ffn", "swiglu").kind == "ffn"
    assert check_stage("feedforward", "swiglu").kind == "ffn"  # the module's name, accepted as an alias
    with pytest.raises(ValueError, match="'positional', 'attention', 'ffn'"):
        check_stage("embedding", "x")


def test_the_caller_can_give_configs():
    cfg = ModelConfig(**BASE, positional="rope", n_kv_heads=2)
    report = check_stage("attention", "mha", config=cfg)
    assert report.ok and report.labels == ["rope kv=2/4"]
    report = check_stage("attention", "mha", config=[cfg, cfg.replace(d_model=32)])
    assert report.ok and report.labels == ["rope kv=2/4 #0", "rope kv=2/4 #1"]  # labels kept apart
    assert check_stage("attention", "mla", config=ModelConfig(**BASE)).labels == ["learned Dq=0 Dr=0"]
    with pytest.raises(ValueError, match="config must be a ModelConfig"):
        check_stage("attention", "mha", config={"n_heads": 4})
    with pytest.raises(ValueError, match="context_length >= 6"):
        check_stage("positional", "learned", config=ModelConfig(**{**BASE, "context_length": 4}))


# --------------------------------------------------------------------------- a student's attention, and its classic mistakes
def student_attention(causal=True, stable=True, absolute_positions=True, transpose_bug=False):
    """A from-scratch grouped-query attention written the way a student would, with optional bugs."""

    def init(config, rng):
        C, GD = config.d_model, config.kv_heads * config.d_head
        shapes = {"W_Q": (C, C), "W_K": (C, GD), "W_V": (C, GD), "W_O": (C, C)}
        return {k: rng.normal(0, 0.2, s).astype(np.float32) for k, s in shapes.items()}

    def forward(params, x, config, positions, kv_cache=None, layer=0, need_cache=None, positional=None):
        B, T, C = x.shape
        H, G, D = config.n_heads, config.kv_heads, config.d_head
        heads = lambda a, n: a.reshape(B, T, n, D).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = heads(x @ params["W_Q"], H), heads(x @ params["W_K"], G), heads(x @ params["W_V"], G)
        rotate = getattr(positional, "rotate", None)
        if rotate is not None:
            q, k = rotate(q, positions, config), rotate(k, positions, config)
        if kv_cache is not None:
            k, v = kv_cache.append(layer, k, v)
        S = k.shape[2]
        kh, vh = np.repeat(k, H // G, axis=1), np.repeat(v, H // G, axis=1)  # (B, H, S, D): head h reads group h // R
        s = q @ kh.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(D))
        query_pos = np.asarray(positions) if absolute_positions else np.arange(T)  # bug: forgets the offset
        if causal:
            s = np.where(np.arange(S)[None, :] > query_pos[:, None], -np.inf, s)
        bias = getattr(positional, "score_bias", None)
        if bias is not None:
            s = s + bias(np.asarray(positions), np.arange(S), config)
        if stable:
            e = np.exp(s - s.max(-1, keepdims=True))
        else:  # bug: exp without subtracting the row max
            e = np.exp(s)
        p = e / e.sum(-1, keepdims=True)
        z = (p @ vh).transpose(0, 2, 1, 3).reshape(B, T, C)
        return z @ params["W_O"], {"x": x, "q": q, "k": kh, "v": vh, "p": p, "z": z, "config": config,
                                   "positions": positions, "positional": positional}

    def backward(params, cache, dy):
        x, q, k, v, p, z, config = (cache[n] for n in ("x", "q", "k", "v", "p", "z", "config"))
        B, T, C = x.shape
        H, G, D = config.n_heads, config.kv_heads, config.d_head
        merge = lambda a: a.transpose(0, 2, 1, 3).reshape(B, T, -1)  # noqa: E731
        dW_O = z.reshape(-1, C).T @ dy.reshape(-1, C)
        dz = (dy @ params["W_O"].T).reshape(B, T, H, D).transpose(0, 2, 1, 3)
        dp = dz @ v.transpose(0, 1, 3, 2)
        dvh = p.transpose(0, 1, 3, 2) @ dz
        ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * (1.0 / math.sqrt(D))
        dq, dkh = ds @ k, ds.transpose(0, 1, 3, 2) @ q
        dk = dkh.reshape(B, G, H // G, T, D).sum(axis=2)  # the R query heads of a group add up
        dv = dvh.reshape(B, G, H // G, T, D).sum(axis=2)
        unrotate = getattr(cache["positional"], "rotate_backward", None)
        if unrotate is not None:
            dq, dk = unrotate(dq, cache["positions"], config), unrotate(dk, cache["positions"], config)
        dq, dk, dv = merge(dq), merge(dk), merge(dv)
        x2 = x.reshape(-1, C)
        grads = {"W_O": dW_O, "W_Q": x2.T @ dq.reshape(-1, C), "W_K": x2.T @ dk.reshape(B * T, -1),
                 "W_V": x2.T @ dv.reshape(B * T, -1)}
        if transpose_bug:
            grads["W_Q"] = grads["W_Q"].T  # bug: the classic wrong transpose
        dx = dq @ params["W_Q"].T + dk @ params["W_K"].T + dv @ params["W_V"].T
        return dx, grads

    def make_cache(config, batch_size, max_len):
        return KVCache.for_config(config, batch_size, max_len)

    return types.SimpleNamespace(init=init, forward=forward, backward=backward, make_cache=make_cache,
                                 __name__="student_attention")


def test_a_correct_student_attention_passes_the_whole_matrix():
    report = check_stage("attention", student_attention())
    assert report.ok, str(report)
    assert len(report.labels) == 6


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the unstable softmax overflows, on purpose
@pytest.mark.parametrize(
    "bug, caught_by",
    [
        (dict(causal=False), "causality"),
        (dict(transpose_bug=True), "gradient check"),
        (dict(stable=False), "stability"),
        (dict(absolute_positions=False), "KV cache"),
    ],
)
def test_classic_mistakes_are_caught(bug, caught_by):
    report = check_stage("attention", student_attention(**bug))
    assert caught_by in failed(report), str(report)
    assert f"FAIL  {caught_by}" in str(report)
    with pytest.raises(AssertionError, match="FAILED"):
        report.assert_ok()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_missing_backward_and_missing_forward():
    fns = student_attention()
    report = check_stage("attention", {"init": fns.init, "forward": fns.forward})
    assert set(failed(report)) == {"gradient check"}  # a forward-only draft: everything else still checked
    assert "backward is missing" in str(report)
    assert "SKIP  KV cache" in str(report) and report.checks  # no make_cache: not checked, not a failure
    with pytest.raises(ValueError, match="missing \\['forward'\\]"):
        check_stage("attention", {"init": fns.init})


def test_an_attention_that_ignores_the_positional_stage_is_caught():
    fns = student_attention()
    ignore = lambda params, x, config, positions, **kw: fns.forward(params, x, config, positions,  # noqa: E731
                                                                    **{**kw, "positional": None})
    report = check_stage("attention", {"init": fns.init, "forward": ignore, "backward": fns.backward})
    assert "positional seam" in failed(report), str(report)


# --------------------------------------------------------------------------- planted: copy the library, alter one line
def altered(fn, old: str, new: str):
    """``fn`` (a library function) re-made from its source with line ``old`` replaced by ``new``."""
    source = inspect.getsource(fn)
    lines = [ln for ln in source.splitlines() if ln.strip().startswith(old)]
    assert len(lines) == 1, f"{fn.__module__}.{fn.__name__} has {len(lines)} lines starting {old!r}: update the planted mistake"
    line = lines[0]
    indent = line[:len(line) - len(line.lstrip())]
    namespace = dict(inspect.getmodule(fn).__dict__)
    exec(compile(source.replace(line, indent + new), f"<altered {fn.__name__}>", "exec"), namespace)
    return namespace[fn.__name__]


def attention_with(backward, make_cache=None, init=mha.init, forward=mha.forward):
    make = make_cache or (lambda config, batch_size, max_len: KVCache.for_config(config, batch_size, max_len))
    return types.SimpleNamespace(init=init, forward=forward, backward=backward, make_cache=make,
                                 __name__="student_attention")


PER_HEAD_DK = "dk_h = dscores.reshape(B, H, T, T).transpose(0, 1, 3, 2) @ qg.reshape(B, H, T, D); "
GQA_WRONG_AXIS = PER_HEAD_DK + "dk = dk_h.reshape(B, R, G, T, D).sum(axis=1)  # bug: groups heads h % G"
GQA_RIGHT_AXIS = PER_HEAD_DK + "dk = dk_h.reshape(B, G, R, T, D).sum(axis=2)"


def test_a_wrong_gqa_reduction_axis_is_caught_by_the_gradient_check_between_1_and_n_heads():
    right = attention_with(altered(mha.backward, "dk = dscores.transpose", GQA_RIGHT_AXIS))
    assert check_stage("attention", right).ok  # the per-head rewrite itself is right
    wrong = attention_with(altered(mha.backward, "dk = dscores.transpose", GQA_WRONG_AXIS))
    report = check_stage("attention", wrong)
    assert failed(report) == {"gradient check": ["learned kv=2/4", "rope kv=2/4"]}, str(report)
    assert "FAIL  gradient check             [learned kv=2/4] 9 arrays, worst W_K" in str(report)
    # the configs that agree: G = H and G = 1 (the old kit's only config was G = H)
    for g in (4, 1):
        assert check_stage("attention", wrong, config=ModelConfig(**BASE, n_kv_heads=g)).ok


def test_an_attention_that_unrotates_with_the_wrong_sign_is_caught_under_rope():
    wrong = attention_with(altered(mha.backward, "unrotate = _require_rotate_backward",
                                   "unrotate = positional.rotate  # bug: rotates again instead of back"))
    report = check_stage("attention", wrong)
    rope = ["rope kv=4/4", "rope kv=2/4", "rope kv=1/4 no bias"]
    # the gradient is wrong, and the seam says why: the positional variant's inverse was never asked for
    assert failed(report) == {"gradient check": rope, "positional seam": rope}, str(report)
    assert "rotate_backward never called" in str(report)
    assert check_stage("attention", wrong, config=ModelConfig(**BASE)).ok  # learned positions alone: unseen


def _no_params(config, rng):
    return {}


def _identity(params, x, positions, config, need_cache=None):
    return x, None


def _identity_backward(params, cache, dy):
    return dy, {}


@pytest.fixture
def rope_wrong_sign():
    def rotate_backward(dy, positions, config):  # bug: the same rotation again (sin not negated)
        return positional.rope_rotate(dy, positions, config)

    registry.register_positional("rope_wrong_sign", init=_no_params, forward=_identity, backward=_identity_backward,
                                 rotate=positional.rope_rotate, rotate_backward=rotate_backward)
    yield "rope_wrong_sign"
    registry.unregister("positional", "rope_wrong_sign")


def test_a_rope_backward_with_the_wrong_sign_is_caught(rope_wrong_sign):
    report = check_stage("positional", rope_wrong_sign)
    assert set(failed(report)) == {"rotation gradient"}, str(report)
    assert len(failed(report)["rotation gradient"]) == 4  # both pairings, both windows
    # and through attention: the rotary variant in the config reaches the attention's gradient check
    report = check_stage("attention", "mha", config=ModelConfig(**BASE, positional=rope_wrong_sign))
    assert set(failed(report)) == {"gradient check"}, str(report)


def test_an_in_place_clip_of_dy_is_caught_by_the_mutation_check():
    def backward(params, cache, dy):
        np.clip(dy, -1.0, 1.0, out=dy)  # bug: "guards" the gradient by writing into the caller's dy
        return mlp.backward(params, cache, dy)

    gelu = registry.get("ffn", "gelu")
    report = check_stage("ffn", {"init": gelu.init, "forward": gelu.forward, "backward": backward})
    assert "no mutation of inputs" in failed(report), str(report)
    assert "changed in place: ['dy']" in str(report)
    # with dy = ones (what the old kit used) the clip changes nothing and would go unseen
    ones = np.ones((2, 3), np.float32)
    np.clip(ones, -1.0, 1.0, out=ones)
    assert np.all(ones == 1.0)


def test_a_forward_that_adds_into_x_is_caught_by_the_mutation_check():
    def forward(params, x, positions, config, need_cache=None):
        x += params["W_pos"][positions]  # bug: writes into the caller's embeddings
        return x, {"positions": positions, "hook_pos_embed": None}

    report = check_stage("positional", {"init": positional.init, "forward": forward, "backward": positional.backward})
    assert "no mutation of inputs" in failed(report), str(report)
    assert "changed in place: ['x']" in str(report)


def test_a_positional_encoding_without_a_range_check_is_caught():
    def forward(params, x, positions, config, need_cache=None):  # learned rows, no range check:
        rows = params["W_pos"][np.asarray(positions) % config.context_length]  # bug: wraps around silently
        return x + rows, {"positions": positions}

    student = {"init": positional.init, "forward": forward,
               "backward": lambda p, c, dy: positional.backward(p, {"positions": c["positions"], "hook_pos_embed": None}, dy)}
    report = check_stage("positional", student)
    assert set(failed(report)) == {"context boundary"}, str(report)


def test_a_learned_backward_that_forgets_the_offset_is_caught_at_the_context_boundary():
    def backward(params, cache, dy):
        dW = np.zeros_like(params["W_pos"])
        dW[:dy.shape[1]] = dy.sum(axis=0)  # bug: rows 0..T-1, wherever the positions were
        return dy, {"W_pos": dW}

    report = check_stage("positional", {"init": positional.init, "forward": positional.forward, "backward": backward})
    assert failed(report) == {"gradient check": ["@6..11"]}, str(report)


def test_a_float64_scalar_and_an_unseeded_init_are_caught():
    gelu = registry.get("ffn", "gelu")

    def forward(params, x, config, need_cache=None):
        y, cache = gelu.forward(params, x, config, need_cache)
        return y * np.sqrt(1.0), cache  # bug: np.sqrt gives a float64 scalar, and y becomes float64

    report = check_stage("ffn", {"init": gelu.init, "forward": forward, "backward": gelu.backward})
    assert set(failed(report)) == {"float32 in -> float32 out"}, str(report)
    init = lambda config, rng: gelu.init(config, np.random.default_rng())  # noqa: E731  bug: ignores rng
    report = check_stage("ffn", {"init": init, "forward": gelu.forward, "backward": gelu.backward})
    assert set(failed(report)) == {"determinism"}, str(report)


def test_the_guides_table_of_mistakes_names_real_checks():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "extending.md").read_text(encoding="utf-8")
    table = text[text.index("| mistake | check that catches it |"):].split("\n\n")[0].splitlines()[2:]
    named = {name.strip().split(" (")[0] for row in table for name in re.split(r";|,| and ", row.split("|")[2])}
    named = {n.removeprefix("through attention").strip() for n in named} - {""}
    real = {c.name for kind, name in [("attention", "mha"), ("positional", "rope")]
            for c in check_stage(kind, name, reference=name).checks}
    assert len(table) >= 12 and named <= real, named - real


# --------------------------------------------------------------------------- MLA's cache
def test_an_mla_whose_make_cache_gives_a_wrong_cache_is_caught():
    mla_fns = dict(init=mla.init, forward=mla.forward, backward=mla.backward)
    wrong_kind = dict(mla_fns, make_cache=lambda config, batch_size, max_len: KVCache.for_config(config, batch_size,
                                                                                                max_len))
    one_row = dict(mla_fns, make_cache=lambda config, batch_size, max_len: LatentKVCache.for_config(config, 1, max_len))
    for student in (wrong_kind, one_row):
        report = check_stage("attention", student, config=[ModelConfig(**BASE, attention="mla", positional=p)
                                                           for p in ("learned", "rope")])
        assert set(failed(report)) == {"KV cache"}, str(report)
        assert len(failed(report)["KV cache"]) == 2


# --------------------------------------------------------------------------- against a reference
def test_matches_reference_compares_forward_and_backward():
    report = check_stage("attention", "mha", reference="mha")
    lines = [c for c in report.checks if c.name == "matches reference"]
    assert report.ok and len(lines) == 6 and all("vs mha" in c.detail for c in lines), str(report)
    assert check_stage("attention", mha, reference=mha).ok  # modules work on either side
    wrong = attention_with(altered(mha.backward, "dk = dscores.transpose", GQA_WRONG_AXIS))
    report = check_stage("attention", wrong, reference="mha")
    assert failed(report)["matches reference"] == ["learned kv=2/4", "rope kv=2/4"], str(report)
    assert "worst dW_K" in str(report)
    report = check_stage("positional", "rope", reference="rope")
    assert report.ok and "rotate, rotate_backward" in next(c.detail for c in report.checks
                                                           if c.name == "matches reference")


def test_a_registered_name_as_reference_means_its_readable_path():
    from minitransformer.attention import mha_reference

    ref = contract._reference_variant("attention", "mha")
    assert ref.forward is mha_reference.forward and ref.backward is mha_reference.backward
    report = check_stage("attention", "mla", reference="mla")
    assert report.ok, str(report)


def test_the_worst_array_is_the_largest_relative_error_unless_its_gradient_is_zero():
    from minitransformer.kit.gradcheck import GradCheck, GradReport

    def check(name, analytic, numeric):
        a, n = np.array(analytic), np.array(numeric)
        rel = float(np.linalg.norm(a - n) / max(np.linalg.norm(a), np.linalg.norm(n), 1e-12))
        return GradCheck(name, rel, float(np.abs(a - n).max()), len(a), a, n, tol=1e-6)

    small = check("x", [1.0, 2.0], [1.0 + 1e-10, 2.0])  # both pass, and differ by less than atol:
    larger = check("W_in", [0.5, 0.1], [0.5 + 5e-10, 0.1])  # before, both counted 0 and the first was named
    zero = check("b_K", [1e-12, -2e-12], [3e-11, 0.0])  # a zero gradient: a relative error of ~1 is noise
    report = GradReport([small, larger, zero])
    assert report.ok and zero.negligible and not larger.negligible
    assert report.worst is larger and str(report).endswith("worst: W_in rel error 9.81e-10 -> OK")
