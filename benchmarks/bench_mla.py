"""Benchmark Multi-Head Latent Attention: cache bytes per token, and decode time per token against context.

What it measures, float32, one attention layer at batch 1 (``nn.no_grad``), each
time the median of ``--repeats`` calls after warmup (``time.perf_counter``; the
three paths timed round-robin, so they see the same machine load):

1. Cache bytes per token: a `LatentKVCache` and an MHA `KVCache` are filled with
   the same 64 tokens through the real forwards; bytes / tokens of each, and the
   MLA / MHA ratio, which must equal the formula (Dc + Dr) / (2·H·Dh).
2. Decode time per token at contexts 256, 1024, 4096: one new token against a
   cache already holding that many positions (filled with random rows, rewound
   after every call), for
   - MHA: `mha.forward` with the per-head K/V cache (2·H·Dh numbers per token);
   - MLA naive: `mla.forward(impl="naive")`, which keeps only latents and
     re-up-projects *all* of them to per-head keys and values at every step;
   - MLA absorbed: `mla.forward(impl="absorbed")`, scores and outputs
     computed in latent space (multi-query attention over [c_KV | k_R]).
   Targets: the absorbed path must not grow like the naive one
   (here: the time it adds per 1000 more cached tokens is at most a third of
   naive's), and at 4096 it must be at least 3x faster than naive re-up-projection.

The benchmark config: d_model 512, 8 heads of 64, d_c 256, d_c' 384, d_R 32,
RoPE; the MHA peer has the same width, heads and head size, no biases. The
machine is shared and timings are noisy: read the ratios, which compare figures
measured in the same run.

    python benchmarks/bench_mla.py [--repeats 21] [--contexts 256 1024 4096]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time

# note: one decode step is a handful of small products (8 query rows against the cache). On the
# shared 2-core machine OpenBLAS's second thread spins against other processes: measured under
# load, (8 x 4096) @ (4096 x 256) took 160 ms with 2 threads and 0.7 ms with one. So the benchmark
# runs numpy single-threaded (set before numpy is imported; an explicit setting is respected).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from minitransformer.core import registry
from minitransformer.attention import mha  # noqa: E402
from minitransformer.attention import mla
from minitransformer.attention import mla_accounting
from minitransformer.core import nn
from minitransformer.core.memory import keep_freed_memory  # noqa: E402
from minitransformer.core.config import ModelConfig  # noqa: E402

MLA_CONFIG = dict(vocab_size=256, d_model=512, n_heads=8, n_layers=1, positional="rope", attention="mla",
                  d_latent=256, d_latent_q=384, d_rope=32, bias=False)
MHA_CONFIG = dict(vocab_size=256, d_model=512, n_heads=8, n_layers=1, positional="rope", bias=False)


def configs(max_context: int):
    ctx = max_context + 1
    return ModelConfig(context_length=ctx, **MLA_CONFIG), ModelConfig(context_length=ctx, **MHA_CONFIG)


def interleaved_runs(fns: dict, repeats: int, warmup: int = 2, inner: dict = None, settle: int = 0) -> dict:
    """Seconds per call of each ``fns[label]()``, timed round-robin: ``{label: [one figure per round]}``.

    note: on a shared machine the load changes from second to second; interleaving the paths
    exposes all of them to the same load, so their ratios stay meaningful. The garbage
    collector is off while timing (one collection before), so no call pays for another's garbage.
    Each timed run calls its function ``inner[label]`` times (default once), after ``settle``
    untimed calls (the first call after switching from other work can be slow).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    inner = inner or {}
    times = {label: [] for label in fns}
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            for label, fn in fns.items():
                for _ in range(settle):
                    fn()
                n = inner.get(label, 1)
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                times[label].append((time.perf_counter() - t0) / n)
    finally:
        gc.enable()
    return times


def interleaved_medians(steps: dict, repeats: int, warmup: int = 2) -> dict:
    """Median ms of each ``steps[label]()``, timed round-robin (one call of each per round, `interleaved_runs`)."""
    return {label: statistics.median(v) * 1e3 for label, v in interleaved_runs(steps, repeats, warmup).items()}


def cache_bytes_per_token(mla_cfg, mha_cfg, tokens: int = 64) -> dict:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, tokens, mla_cfg.d_model)).astype(np.float32)
    mla_p, mha_p = mla.init(mla_cfg, rng), mha.init(mha_cfg, rng)
    mla_cache = mla.LatentKVCache.for_config(mla_cfg)
    mha_cache = mha.KVCache.for_config(mha_cfg)
    with nn.no_grad():
        mla.forward(mla_p, x, mla_cfg, np.arange(tokens), kv_cache=mla_cache, positional=registry.chosen("positional", mla_cfg))
        mha.forward(mha_p, x, mha_cfg, np.arange(tokens), kv_cache=mha_cache, positional=registry.chosen("positional", mha_cfg))
    H, Dh, Dv, Dc, Dq, Dr = mla.dims(mla_cfg)
    return {"mla": mla_cache.nbytes / tokens, "mha": mha_cache.nbytes / tokens,
            "ratio": mla_cache.nbytes / mha_cache.nbytes, "formula": (Dc + Dr) / (2 * H * Dh)}


def decode_times(mla_cfg, mha_cfg, contexts, repeats: int) -> dict:
    """``{label: [ms at each context]}`` for MHA, MLA naive and MLA absorbed."""
    rng = np.random.default_rng(1)
    mla_p, mha_p = mla.init(mla_cfg, rng), mha.init(mha_cfg, rng)
    S_max = max(contexts)
    mla_cache = mla.LatentKVCache.for_config(mla_cfg, max_len=S_max + 1)
    mha_cache = mha.KVCache.for_config(mha_cfg, max_len=S_max + 1)
    # filled with plausible rows: unit-RMS latents and rotated-key-sized values
    mla_cache.kv[0][:] = rng.normal(size=mla_cache.kv[0].shape).astype(np.float32)
    mha_cache.k[0][:] = rng.normal(0, 0.5, size=mha_cache.k[0].shape).astype(np.float32)
    mha_cache.v[0][:] = rng.normal(0, 0.5, size=mha_cache.v[0].shape).astype(np.float32)
    x = rng.normal(size=(1, 1, mla_cfg.d_model)).astype(np.float32)
    out = {"MHA": [], "MLA naive": [], "MLA absorbed": []}
    for S in contexts:
        pos = np.array([S])

        def mha_step():
            mha_cache.lengths[0] = S  # rewind: the cache holds S positions before every call
            mha.forward(mha_p, x, mha_cfg, pos, kv_cache=mha_cache, positional=registry.chosen("positional", mha_cfg))

        def mla_step(impl):
            def step():
                mla_cache.lengths[0] = S
                mla.forward(mla_p, x, mla_cfg, pos, kv_cache=mla_cache, impl=impl, positional=registry.chosen("positional", mla_cfg))
            return step

        with nn.no_grad():
            ms = interleaved_medians({"MHA": mha_step, "MLA naive": mla_step("naive"),
                                      "MLA absorbed": mla_step("absorbed")}, repeats)
        for label, v in ms.items():
            out[label].append(v)
    return out


def check_equal_outputs(mla_cfg) -> float:
    """Before timing: both MLA paths give the same next-token output on a filled cache."""
    rng = np.random.default_rng(2)
    p = mla.init(mla_cfg, rng)
    x = rng.normal(size=(1, 65, mla_cfg.d_model)).astype(np.float32)
    ys = []
    for impl in mla.IMPLS:
        cache = mla.LatentKVCache.for_config(mla_cfg)
        with nn.no_grad():
            mla.forward(p, x[:, :64], mla_cfg, np.arange(64), kv_cache=cache, impl="naive", positional=registry.chosen("positional", mla_cfg))
            ys.append(mla.forward(p, x[:, 64:], mla_cfg, np.array([64]), kv_cache=cache, impl=impl, positional=registry.chosen("positional", mla_cfg))[0])
    return float(np.abs(ys[0] - ys[1]).max())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--contexts", type=int, nargs="+", default=[256, 1024, 4096])
    args = ap.parse_args(argv)
    keep_freed_memory()  # as `GPT` does for generation: the naive path's large temporaries reuse the heap
    contexts = sorted(set(args.contexts))
    if len(contexts) < 2 or contexts[0] < 1:
        ap.error(f"--contexts needs at least two different positive lengths (got {args.contexts}): the growth "
                 "is measured from the shortest to the longest, e.g. --contexts 256 4096")
    mla_cfg, mha_cfg = configs(max(contexts))
    H, Dh, Dv, Dc, Dq, Dr = mla.dims(mla_cfg)
    print(f"bench_mla: Python {platform.python_version()}, numpy {np.__version__}, {time.strftime('%Y-%m-%d')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"config: d_model {mla_cfg.d_model}, H {H}, Dh {Dh}, Dc {Dc}, Dq {Dq}, Dr {Dr} (MHA peer: same H, Dh)\n")

    diff = check_equal_outputs(mla_cfg)
    print(f"absorbed vs naive next-token output, max |diff| (float32): {diff:.1e}\n")

    b = cache_bytes_per_token(mla_cfg, mha_cfg)
    ok_bytes = abs(b["ratio"] - b["formula"]) < 1e-12
    print("1. cache bytes per token (one layer, float32)")
    print(f"   MHA {b['mha']:.0f} B   MLA {b['mla']:.0f} B   MLA/MHA {b['ratio']:.5f}   "
          f"formula (Dc+Dr)/(2·H·Dh) = {Dc + Dr}/{2 * H * Dh} = {b['formula']:.5f}   {'OK' if ok_bytes else 'FAIL'}\n")

    t = decode_times(mla_cfg, mha_cfg, contexts, args.repeats)
    sizes = mla_accounting.AttentionSizes.from_config(mla_cfg, "bench")
    print("2. decode time per token, one layer, batch 1 (median ms)")
    print(f"   {'context':>8} {'MHA':>9} {'MLA naive':>11} {'MLA absorbed':>13} {'naive/absorbed':>15} "
          f"{'MACs naive/absorbed':>20}")
    for k, S in enumerate(contexts):
        macs = {p: mla_accounting.decode_macs(sizes, S, p)["total"] for p in ("naive_reproject", "absorbed")}
        print(f"   {S:>8} {t['MHA'][k]:>9.3f} {t['MLA naive'][k]:>11.3f} {t['MLA absorbed'][k]:>13.3f} "
              f"{t['MLA naive'][k] / t['MLA absorbed'][k]:>14.1f}x {macs['naive_reproject'] / macs['absorbed']:>19.1f}x")
    # growth as a slope: ms added per 1000 more cached tokens, from the shortest to the longest context
    # (a ratio t(4096)/t(256) would mostly measure the fixed per-call overhead at 256)
    span = (contexts[-1] - contexts[0]) / 1000
    slope = {label: (v[-1] - v[0]) / span for label, v in t.items()}
    speedup = t["MLA naive"][-1] / t["MLA absorbed"][-1]
    ok_growth = slope["MLA absorbed"] <= slope["MLA naive"] / 3
    ok_speed = speedup >= 3.0
    print(f"\n   growth, ms per 1000 more cached tokens ({contexts[0]} -> {contexts[-1]}): "
          + ", ".join(f"{k} {v:.2f}" for k, v in slope.items()))
    print(f"   absorbed grows at most 1/3 as fast as naive ({slope['MLA absorbed'] / slope['MLA naive']:.3f}): "
          f"{'OK' if ok_growth else 'FAIL'}")
    print(f"   at {contexts[-1]}: absorbed is {speedup:.1f}x faster than naive re-up-projection "
          f"(target >= 3x): {'OK' if ok_speed else 'FAIL'}")
    return 0 if (ok_bytes and ok_growth and ok_speed) else 1


if __name__ == "__main__":
    sys.exit(main())
