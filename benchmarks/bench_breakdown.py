"""Where a training step's time goes: stage by stage, and by kind of work (used by bench_model.py).

Two views of one ``loss -> backward -> AdamW`` step of the default variants
(learned positions, LayerNorm, MHA, GELU MLP, tied head):

1. ``stage_breakdown``: the model's own stage functions called in the order
   `model.forward` and `model.backward` call them, with a timer around each
   (embedding, positions, norms, attention, MLP, residual adds, head, loss, the
   backward of each, gather + AdamW). The walk's loss is checked equal to
   ``model.loss`` so the timed composition is the real one.
2. ``kind_breakdown``: the same step split by kind of work, each part timed on
   its own at the step's shapes: every matmul the step makes (the same products,
   the same operand layouts), the softmax over the scores and its backward,
   LayerNorm, GELU, cross-entropy, AdamW; what is left of the measured step time
   is memory traffic (contiguous copies, the fused q|k|v gather, residual adds,
   fresh arrays) and Python overhead.

Medians of ``repeats`` runs after a warmup; milliseconds per step.
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np

from minitransformer import embedding, model as gpt
from minitransformer.core import nn
from minitransformer.feedforward import output
from minitransformer.model import GPT
from minitransformer.training import AdamW

LR, BETAS, WEIGHT_DECAY = 3e-4, (0.9, 0.95), 0.1
STAGES = ("embedding", "positions", "norms", "attention", "MLP", "residual adds", "head", "loss")


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def stage_breakdown(cfg, x: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    """Median ms per stage, forward and backward, plus gather+AdamW, over ``repeats`` timed steps."""
    model = GPT(cfg, seed=0)
    opt = AdamW(model.params, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
    runs: dict = {}
    losses = []
    for r in range(repeats + 2):  # two warmup steps
        t: dict = {}
        losses.append(_timed_step(model, opt, cfg, x, y, t))
        if r >= 2:
            for k, v in t.items():
                runs.setdefault(k, []).append(v)
    check = GPT(cfg, seed=0)
    check_opt = AdamW(check.params, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
    expected = []
    for _ in range(2):  # the walk's first two losses must be the model's own
        expected.append(check.loss(x, y))
        check_opt.step(check_opt.gather(check.backward()))
    out = {k: _median_ms(v) for k, v in runs.items()}
    out["loss_matches_model"] = bool(np.allclose(losses[:2], expected, rtol=1e-6, atol=0))
    return out


def _timed_step(model, opt, cfg, ids, targets, t: dict) -> float:
    """One training step composed like `model.forward`/`backward`, each stage timed into ``t`` (seconds)."""
    clock = time.perf_counter

    def add(key, t0):
        t[key] = t.get(key, 0.0) + clock() - t0

    p, L = model.params, cfg.n_layers
    pos_stage, attn_stage, ffn_stage = (gpt.stage(k, cfg) for k in ("positional", "attention", "ffn"))
    t_step = clock()
    # ---- forward
    t0 = clock(); xs, c_embed = embedding.forward(p["embed"], ids, need_cache=True); add("fwd embedding", t0)
    positions = np.arange(ids.shape[1])
    t0 = clock(); xs, c_pos = pos_stage.forward(p["pos"], xs, positions, cfg, need_cache=True); add("fwd positions", t0)
    blocks = []
    for i in range(L):
        b = p["blocks"][i]
        t0 = clock(); h, c1 = gpt.norm_forward(cfg, b["ln1"], xs); add("fwd norms", t0)
        t0 = clock()
        a, ca = attn_stage.forward(b["attn"], h, cfg, positions, layer=i, need_cache=True, positional=pos_stage)
        add("fwd attention", t0)
        t0 = clock(); xs = xs + a; add("fwd residual adds", t0)
        t0 = clock(); h, c2 = gpt.norm_forward(cfg, b["ln2"], xs); add("fwd norms", t0)
        t0 = clock(); m, cm = ffn_stage.forward(b["mlp"], h, cfg, need_cache=True); add("fwd MLP", t0)
        t0 = clock(); xs = xs + m; add("fwd residual adds", t0)
        blocks.append((c1, ca, c2, cm))
    t0 = clock(); h, cf = gpt.norm_forward(cfg, p["ln_final"], xs); add("fwd norms", t0)
    W_E = p["embed"]["W_E"]
    t0 = clock(); logits, ch = output.head_forward(p["unembed"], h, W_E=W_E, need_cache=True); add("fwd head", t0)
    t0 = clock(); loss, closs = nn.cross_entropy_forward(logits, targets); add("fwd loss", t0)
    del logits
    # ---- backward
    t0 = clock(); dlogits = nn.cross_entropy_backward(closs); add("bwd loss", t0)
    del closs
    t0 = clock(); dx, g_head = output.head_backward(p["unembed"], ch, dlogits, W_E=W_E); add("bwd head", t0)
    del dlogits
    grads: dict = {"blocks": [None] * L, "unembed": {}}
    t0 = clock(); dx, grads["ln_final"] = gpt.norm_backward(cfg, cf, dx); add("bwd norms", t0)
    for i in reversed(range(L)):
        b, (c1, ca, c2, cm), g = p["blocks"][i], blocks[i], {}
        t0 = clock(); dh, g["mlp"] = ffn_stage.require_backward()(b["mlp"], cm, dx); add("bwd MLP", t0)
        t0 = clock(); dh, g["ln2"] = gpt.norm_backward(cfg, c2, dh); add("bwd norms", t0)
        t0 = clock(); dx = dx + dh; add("bwd residual adds", t0)
        t0 = clock(); dh, g["attn"] = attn_stage.require_backward()(b["attn"], ca, dx); add("bwd attention", t0)
        t0 = clock(); dh, g["ln1"] = gpt.norm_backward(cfg, c1, dh); add("bwd norms", t0)
        t0 = clock(); dx = dx + dh; add("bwd residual adds", t0)
        grads["blocks"][i] = g
        blocks[i] = None
    t0 = clock(); dx, grads["pos"] = pos_stage.require_backward()(p["pos"], c_pos, dx); add("bwd positions", t0)
    t0 = clock()
    _, grads["embed"] = embedding.backward(p["embed"], c_embed, dx)
    grads["embed"]["W_E"] = grads["embed"]["W_E"] + g_head["W_E"]
    add("bwd embedding", t0)
    t0 = clock(); opt.step(opt.gather(grads)); add("AdamW (gather + step)", t0)
    add("step", t_step)
    return loss


# ---------------------------------------------------------------------------------- by kind of work
def _products(cfg, B: int) -> list[tuple[str, tuple, tuple, bool]]:
    """Every matmul of one step: (label, a shape, b shape, b transposed?) for the default MHA + GELU model."""
    T, C, F, H, D, V, L = (cfg.context_length, cfg.d_model, cfg.ff_width, cfg.n_heads, cfg.d_head,
                          cfg.vocab_size, cfg.n_layers)
    N = B * T
    per_layer = []
    for label, (I, O) in (("q|k|v", (C, 3 * H * D)), ("W_O", (H * D, C)), ("W_in", (C, F)), ("W_out", (F, C))):
        per_layer += [(f"{label} forward", (N, I), (I, O), False),  # x @ W
                      (f"{label} dW", (I, N), (N, O), False),  # x.T @ dy
                      (f"{label} dx", (N, O), (I, O), True)]  # dy @ W.T
    per_layer += [("scores q @ k^T", (B, H, T, D), (B, H, D, T), False),
                  ("pattern @ v", (B, H, T, T), (B, H, T, D), False),
                  ("dv = pattern^T @ dz", (B, H, T, T), (B, H, T, D), False),
                  ("dpattern = dz @ v^T", (B, H, T, D), (B, H, D, T), False),
                  ("dq = dscores @ k", (B, H, T, T), (B, H, T, D), False),
                  ("dk = dscores^T @ q", (B, H, T, T), (B, H, T, D), False)]
    head = [("head forward", (N, C), (V, C), True), ("head dW", (N, V), (N, C), "aT"),
            ("head dx", (N, V), (V, C), False)]
    return per_layer * L + head


def _time(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def kind_breakdown(cfg, B: int, step_ms: float, repeats: int) -> dict:
    """ms per step by kind of work, each timed alone at the step's shapes; the rest is step_ms minus their sum."""
    rng = np.random.default_rng(0)
    T, C, F, H, V, L = cfg.context_length, cfg.d_model, cfg.ff_width, cfg.n_heads, cfg.vocab_size, cfg.n_layers
    r = max(repeats, 5)
    out: dict = {}
    mm_s, flops = 0.0, 0
    for _, a_shape, b_shape, how in _products(cfg, B):
        a = rng.standard_normal(a_shape, dtype=np.float32)
        b = rng.standard_normal(b_shape, dtype=np.float32)
        if how == "aT":  # (N, V).T @ (N, C): the head's dW, read transposed
            mm_s += _time(lambda a=a, b=b: a.T @ b, r)
            flops += 2 * a_shape[0] * a_shape[1] * b_shape[1]
            continue
        bb = b.swapaxes(-1, -2) if how else b
        mm_s += _time(lambda a=a, bb=bb: a @ bb, r)
        flops += 2 * math.prod(a_shape) * bb.shape[-1]
    out["matmul"] = mm_s * 1e3
    out["matmul_gflops"] = flops / mm_s / 1e9
    scores = rng.standard_normal((B, H, T, T), dtype=np.float32)
    mask = np.triu(np.full((T, T), -np.inf, np.float32), 1)

    def softmax_fwd():
        s = scores + mask  # what the forward does in place on its fresh scores
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        return s

    pattern = softmax_fwd()
    dp = rng.standard_normal(pattern.shape, dtype=np.float32)
    delta = rng.standard_normal((B, H, T, 1), dtype=np.float32)

    def softmax_bwd():
        d = dp - delta
        d *= pattern
        return d

    out["softmax (attention)"] = L * (_time(softmax_fwd, r) + _time(softmax_bwd, r)) * 1e3
    xs = rng.standard_normal((B, T, C), dtype=np.float32)
    w, bias = np.ones(C, np.float32), np.zeros(C, np.float32)
    yln, cln = nn.layernorm_forward(xs, w, bias)
    n_norms = 2 * L + 1
    out["LayerNorm"] = n_norms * (_time(lambda: nn.layernorm_forward(xs, w, bias), r)
                                  + _time(lambda: nn.layernorm_backward(xs, cln), r)) * 1e3
    pre = rng.standard_normal((B, T, F), dtype=np.float32)
    _, cg = nn.gelu_forward(pre)
    out["GELU"] = L * (_time(lambda: nn.gelu_forward(pre), r) + _time(lambda: nn.gelu_backward(pre, cg), r)) * 1e3
    logits = rng.standard_normal((B, T, V), dtype=np.float32)
    tg = rng.integers(0, V, (B, T))

    def ce():
        return nn.cross_entropy_backward(nn.cross_entropy_forward(logits, tg)[1])

    out["cross-entropy (softmax over V)"] = _time(ce, r) * 1e3
    model = GPT(cfg, seed=0)
    opt = AdamW(model.params, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
    g = np.ones_like(opt.buffer)
    out["AdamW"] = _time(lambda: opt.step(g), r) * 1e3
    named = sum(v for k, v in out.items() if k != "matmul_gflops")
    out["memory traffic + Python (the rest)"] = max(step_ms - named, 0.0)
    return out


def render(name: str, stages: dict, kinds: dict, step_ms: float, peak: float) -> list[str]:
    """Text lines: the stage table and the kind table of one config."""
    lines = [f"   {name}: step {step_ms:.1f} ms (sum of timed stages {stages['step']:.1f} ms; walk loss equals "
             f"model.loss: {'yes' if stages['loss_matches_model'] else 'NO'})"]
    row = []
    for s in STAGES:
        f, b = stages.get(f"fwd {s}", 0.0), stages.get(f"bwd {s}", 0.0)
        row.append(f"{s} {f:.1f}+{b:.1f}")
    row.append(f"AdamW {stages['AdamW (gather + step)']:.1f}")
    lines.append("     by stage (forward + backward, ms): " + ", ".join(row))
    mm = kinds["matmul"]
    parts = [f"matmul {mm:.1f} ({100 * mm / step_ms:.0f}%, {kinds['matmul_gflops']:.0f} GFLOP/s at these shapes = "
             f"{100 * kinds['matmul_gflops'] / peak:.0f}% of peak)"]
    for k, v in kinds.items():
        if k not in ("matmul", "matmul_gflops"):
            parts.append(f"{k} {v:.1f} ({100 * v / step_ms:.0f}%)")
    lines.append("     by kind (ms, share of the step): " + ", ".join(parts))
    return lines
