"""Where a training step's time goes: the cores, stage by stage, and by kind of work (used by bench_model.py).

A step of the default variants (learned positions, LayerNorm, MHA, GELU MLP, tied head)
runs as `GPT.loss`/`GPT.backward` run it: the batch is cut into one shard per core, each
shard's forward and backward runs in its own thread with BLAS held to one thread
(`core/cores.py`), then the shards' gradients are summed and AdamW updates the weights.
Four views:

1. ``core_breakdown``: the step split into the parallel part (loss + backward of all
   shards side by side), and the serial tail (gather, then AdamW); and one shard's
   loss + backward run alone on one thread, so the cost of running side by side
   (memory bandwidth, and Python's lock handed between the threads) shows.
2. ``stage_breakdown``: one shard, one thread, the model's own stage functions called in
   the order `model.forward` and `model.backward` call them (inside `nn.lean_caches`, as
   `GPT.loss` runs), with a timer around each (embedding, positions, norms, attention,
   MLP, residual adds, head, loss, the backward of each). The walk's loss is checked equal
   to ``model.loss`` on the same rows, so the timed composition is the real one.
3. ``kind_breakdown``: the same shard split by kind of work, each part timed on its own
   at the shard's shapes on one thread: every matmul (the same products, the same operand
   layouts), attention's tiles (`attention.blockwise`, forward and backward) split into
   their softmax and the rest of the tile (the tiles timed again with the softmax swapped for a
   no-op: what remains is their matmuls and the products around them), LayerNorm, GELU,
   cross-entropy; what is left of the shard's time is memory traffic (copies, the fused q|k|v
   gather, residual adds, fresh arrays, and the cost to every kind of running among the others)
   and Python overhead.
4. ``in_place_breakdown``: the same kinds timed where they run, inside the shard's own loss
   and backward (the library's functions wrapped with a timer): each kind then carries what
   the rest of the shard does to it (operands no longer in cache, outputs written to memory
   that is not), and what is left is the copies, residual adds and Python between them. The
   two views side by side show how much slower each kind runs in place than alone.

Medians of ``repeats`` runs after a warmup; milliseconds.
"""

from __future__ import annotations

import math
import statistics
import sys
import time

from typing import Optional

import numpy as np

from minitransformer import embedding, model as gpt
from minitransformer.attention import blockwise
from minitransformer.core import cores, nn
from minitransformer.feedforward import output
from minitransformer.model import GPT
from minitransformer.training import AdamW

LR, BETAS, WEIGHT_DECAY = 3e-4, (0.9, 0.95), 0.1
STAGES = ("embedding", "positions", "norms", "attention", "MLP", "residual adds", "head", "loss")


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def core_breakdown(cfg, x: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    """ms: the parallel part of a step, its serial tail, and one shard alone on one thread."""
    model = GPT(cfg, seed=0)
    opt = AdamW(model.params, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
    shards = cores.shard_slices(len(x), model.threads)
    part, gather, adamw = [], [], []
    for r in range(repeats + 2):
        t0 = time.perf_counter()
        model.loss(x, y)
        g = model.backward()
        t1 = time.perf_counter()
        flat = opt.gather(g)
        t2 = time.perf_counter()
        opt.step(flat)
        t3 = time.perf_counter()
        if r >= 2:
            part.append(t1 - t0)
            gather.append(t2 - t1)
            adamw.append(t3 - t2)
    one = GPT(cfg, seed=0, threads=1)
    sl = shards[0]
    alone = []
    with cores.blas_threads(1):
        for r in range(repeats + 2):
            t0 = time.perf_counter()
            one.loss(x[sl], y[sl])
            one.backward()
            if r >= 2:
                alone.append(time.perf_counter() - t0)
    return {"threads": len(shards), "shard_rows": sl.stop - sl.start, "parallel_ms": _median_ms(part),
            "gather_ms": _median_ms(gather), "adamw_ms": _median_ms(adamw), "shard_alone_ms": _median_ms(alone)}


def _first_shard(x: np.ndarray, y: np.ndarray):
    """The rows of the first shard (of one per core) that a step cuts from the batch: the shard the views time alone."""
    sl = cores.shard_slices(len(x), cores.available())[0]
    return x[sl], y[sl]


def stage_breakdown(cfg, x: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    """Median ms per stage of one shard (the first), forward and backward, one thread, plus gather+AdamW."""
    model = GPT(cfg, seed=0, threads=1)
    opt = AdamW(model.params, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
    x, y = _first_shard(x, y)
    runs: dict = {}
    losses = []
    with cores.blas_threads(1), nn.lean_caches():
        for r in range(repeats + 2):  # two warmup steps
            t: dict = {}
            losses.append(_timed_step(model, opt, cfg, x, y, t))
            if r >= 2:
                for k, v in t.items():
                    runs.setdefault(k, []).append(v)
    check = GPT(cfg, seed=0, threads=1)
    check_opt = AdamW(check.params, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)
    expected = []
    for _ in range(2):  # the walk's first two losses must be the model's own
        expected.append(check.loss(x, y))
        check_opt.step(check_opt.gather(check.backward()))
    out = {k: _median_ms(v) for k, v in runs.items()}
    out["loss_matches_model"] = bool(np.allclose(losses[:2], expected, rtol=1e-6, atol=0))
    out["shard_rows"] = len(x)
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
    """Every dense matmul of one step: (label, a shape, b shape, b transposed?) for the default MHA + GELU model."""
    T, C, F, H, D, V, L = (cfg.context_length, cfg.d_model, cfg.ff_width, cfg.n_heads, cfg.d_head,
                          cfg.vocab_size, cfg.n_layers)
    N = B * T
    per_layer = []
    for label, (I, O) in (("q|k|v", (C, 3 * H * D)), ("W_O", (H * D, C)), ("W_in", (C, F)), ("W_out", (F, C))):
        per_layer += [(f"{label} forward", (N, I), (I, O), False),  # x @ W
                      (f"{label} dW", (I, N), (N, O), False),  # x.T @ dy
                      (f"{label} dx", (N, O), (I, O), True)]  # dy @ W.T
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


def kind_breakdown(cfg, B: int, shard_ms: float, repeats: int) -> dict:
    """ms of one shard (B rows, one thread) by kind of work, each timed alone; the rest is shard_ms minus their sum."""
    with cores.blas_threads(1):
        return _kinds(cfg, B, shard_ms, max(repeats, 5))


def _kinds(cfg, B: int, shard_ms: float, r: int) -> dict:
    rng = np.random.default_rng(0)
    T, C, F, H, D, V, L = (cfg.context_length, cfg.d_model, cfg.ff_width, cfg.n_heads, cfg.d_head,
                          cfg.vocab_size, cfg.n_layers)
    f32 = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
    out: dict = {}
    mm_s, flops = 0.0, 0
    for _, a_shape, b_shape, how in _products(cfg, B):
        a, b = f32(*a_shape), f32(*b_shape)
        if how == "aT":  # (N, V).T @ (N, C): the head's dW, read transposed
            mm_s += _time(lambda a=a, b=b: a.T @ b, r)
            flops += 2 * a_shape[0] * a_shape[1] * b_shape[1]
            continue
        bb = b.swapaxes(-1, -2) if how else b
        mm_s += _time(lambda a=a, bb=bb: a @ bb, r)
        flops += 2 * math.prod(a_shape) * bb.shape[-1]
    out["dense matmuls"] = mm_s * 1e3
    out["matmul_gflops"] = flops / mm_s / 1e9
    # the attention core as training runs it: tiles of scores, softmax and pattern @ v, and their backward
    q, kT, v, dz = f32(B, H, T, D) * 0.2, f32(B, H, D, T), f32(B, H, T, D), f32(B, H, T, D)
    vT, delta = np.ascontiguousarray(v.swapaxes(-1, -2)), f32(B, H, T, 1)
    pos = np.arange(T)
    mask = np.where(pos[None, :] > pos[:, None], -np.inf, 0.0).astype(np.float32)
    bands = blockwise.causal_bands(pos, pos)
    def core():
        blockwise.attend(q, kT, v, mask, bands)
        blockwise.attend_backward(q, kT, vT, dz, delta, mask, bands)

    whole_core = L * 1e3 * _time(core, r)
    exp_scores = blockwise._exp_scores  # the softmax of a tile; swapped for a no-op to time the rest alone
    blockwise._exp_scores = lambda p, *args: np.ones((*p.shape[:-1], 1), p.dtype)
    try:
        without_softmax = L * 1e3 * _time(core, r)
    finally:
        blockwise._exp_scores = exp_scores
    out["attention tiles (matmuls and products)"] = without_softmax
    out["attention softmax"] = max(whole_core - without_softmax, 0.0)
    xs = f32(B, T, C)
    w, bias = np.ones(C, np.float32), np.zeros(C, np.float32)
    _, cln = nn.layernorm_forward(xs, w, bias)
    out["LayerNorm"] = (2 * L + 1) * 1e3 * (_time(lambda: nn.layernorm_forward(xs, w, bias), r)
                                            + _time(lambda: nn.layernorm_backward(xs, cln), r))
    pre, dpost = f32(B, T, F), f32(B, T, F)
    _, dgelu = nn.gelu_forward_with_grad(pre)
    out["GELU"] = L * 1e3 * (_time(lambda: nn.gelu_forward_with_grad(pre), r)
                             + _time(lambda: np.multiply(dpost, dgelu), r))
    logits, tg = f32(B, T, V), rng.integers(0, V, (B, T))
    out["cross-entropy (softmax over V)"] = 1e3 * _time(
        lambda: nn.cross_entropy_backward(nn.cross_entropy_forward(logits, tg)[1]), r)
    named = sum(v for k, v in out.items() if k != "matmul_gflops")
    out["memory traffic + Python (the rest)"] = max(shard_ms - named, 0.0)
    return out


# the kinds of work timed in place: each is a set of the library's functions, wrapped with a timer while
# one shard runs as `GPT.loss`/`GPT.backward` run it (the modules that imported a function by name get
# the wrapper too); what is not inside any of them is the shard's copies, residual adds and Python
IN_PLACE = {
    "dense matmuls (with bias)": (nn, ("linear_forward", "linear_backward")),
    "attention tiles (with softmax)": (blockwise, ("attend", "attend_backward")),
    "LayerNorm": (nn, ("layernorm_forward", "layernorm_backward")),
    "GELU": (nn, ("gelu_forward_with_grad",)),
    "cross-entropy": (nn, ("cross_entropy_forward", "cross_entropy_backward")),
}


def in_place_breakdown(cfg, x: np.ndarray, y: np.ndarray, repeats: int) -> dict:
    """ms of one shard (one thread, its own loss + backward) by kind of work, each timed where it runs.

    Unlike `kind_breakdown`, which times each kind alone on fresh inputs, this times the same
    calls inside the real shard, so what the shard's other work does to them (operands that
    are no longer in cache, outputs written to memory that is not) is counted with them.
    """
    model = GPT(cfg, seed=0, threads=1)
    x, y = _first_shard(x, y)
    spent: dict = {}
    clock = time.perf_counter

    def timed(kind, fn):
        def wrapper(*args, **kwargs):
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[kind] = spent.get(kind, 0.0) + clock() - t0
        return wrapper

    patched = []  # (module, name, original)
    for kind, (home, names) in IN_PLACE.items():
        for name in names:
            original = getattr(home, name)
            for module in list(sys.modules.values()):
                if getattr(module, "__name__", "").startswith("minitransformer") and \
                        getattr(module, name, None) is original:
                    patched.append((module, name, original))
                    setattr(module, name, timed(kind, original))
    runs: dict = {}
    try:
        with cores.blas_threads(1):
            for r in range(repeats + 2):
                spent.clear()
                t0 = clock()
                model.loss(x, y)
                model.backward()
                total = clock() - t0
                if r >= 2:
                    for kind in IN_PLACE:
                        runs.setdefault(kind, []).append(spent.get(kind, 0.0))
                    runs.setdefault("shard", []).append(total)
    finally:
        for module, name, original in patched:
            setattr(module, name, original)
    out = {k: _median_ms(v) for k, v in runs.items()}
    out["copies, residual adds, Python (the rest)"] = max(out["shard"] - sum(out[k] for k in IN_PLACE), 0.0)
    return out


def render(name: str, cores_ms: dict, stages: dict, kinds: dict, step_ms: float, peak: float,
           in_place: Optional[dict] = None) -> list[str]:
    """Text lines: the cores, the stage table and the kind tables (alone, and in place if given) of one config."""
    c = cores_ms
    side = c["parallel_ms"] / c["shard_alone_ms"] - 1
    lines = [f"   {name}: step {step_ms:.1f} ms = {c['threads']} shards of {c['shard_rows']} rows side by side "
             f"{c['parallel_ms']:.1f} ms (one shard alone on one thread: {c['shard_alone_ms']:.1f} ms, so running side "
             f"by side costs {100 * side:+.0f}%) + gather {c['gather_ms']:.1f} ms + AdamW {c['adamw_ms']:.1f} ms"]
    row = []
    for s in STAGES:
        f, b = stages.get(f"fwd {s}", 0.0), stages.get(f"bwd {s}", 0.0)
        row.append(f"{s} {f:.1f}+{b:.1f}")
    lines.append(f"     one shard by stage (forward + backward, ms; sum {stages['step'] - stages['AdamW (gather + step)']:.1f}; "
                 f"walk loss equals model.loss: {'yes' if stages['loss_matches_model'] else 'NO'}): " + ", ".join(row))
    mm = kinds["dense matmuls"]
    shard = c["shard_alone_ms"]
    single_peak = peak / max(c["threads"], 1)
    parts = [f"dense matmuls {mm:.1f} ({100 * mm / shard:.0f}%, {kinds['matmul_gflops']:.0f} GFLOP/s on one thread = "
             f"{100 * kinds['matmul_gflops'] / single_peak:.0f}% of a core's share of the peak)"]
    for k, v in kinds.items():
        if k not in ("dense matmuls", "matmul_gflops"):
            parts.append(f"{k} {v:.1f} ({100 * v / shard:.0f}%)")
    lines.append("     one shard by kind, each timed alone (ms, share of the shard alone): " + ", ".join(parts))
    if in_place:
        whole = in_place["shard"]
        parts = [f"{k} {in_place[k]:.1f} ({100 * in_place[k] / whole:.0f}%)"
                 for k in (*IN_PLACE, "copies, residual adds, Python (the rest)")]
        lines.append(f"     one shard by kind, each timed in place (ms of its {whole:.1f} ms, share): " + ", ".join(parts))
    return lines
