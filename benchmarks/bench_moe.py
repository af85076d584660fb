"""Benchmark the mixture-of-experts layer against a dense SwiGLU layer with the same active parameters.

What it measures, float32, one layer, forward + backward on a batch of 16 x 128
tokens, each figure the median of ``--repeats`` calls after warmup, all paths timed
round-robin so they see the same machine load:

1. MoE (``moe_impl="fast"``): S shared + K of E routed SwiGLU experts of width F_e,
   DeepSeek-V3 routing (sigmoid scores, top-K by score + bias, normalised gates).
2. Dense SwiGLU (`feedforward`, no biases) of width F = (K + S) * F_e: the same
   expert parameters per token (the MoE adds its C x E router, listed below).
3. The MoE's ``"reference"`` path (a loop over experts with masks), for comparison.

Target: MoE fast within 1.5x of the dense layer. Where the MoE's extra time goes:
the router alone (scores, top-K choice, gates, and their backward), the expert
MLPs alone (each expert's forward and backward on its tokens, already sorted, plus
the shared MLP), and the rest (sorting, gathers, scatters, the sum over K). The
router uses a fresh random ``b`` so the load is realistic, not perfectly even.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/bench_moe.py [--repeats 21]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

# note: like bench_mla, single-threaded BLAS unless told otherwise: on the shared 2-core machine a
# second BLAS thread spins against other processes and the figures stop meaning anything.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from minitransformer.core.config import ModelConfig  # noqa: E402
from minitransformer.core.memory import keep_freed_memory  # noqa: E402
from minitransformer.feedforward import mlp as feedforward  # noqa: E402
from minitransformer.feedforward import moe, moe_router  # noqa: E402

from bench_mla import interleaved_medians  # noqa: E402  (benchmarks/ is the script's folder)

BASE = dict(vocab_size=256, context_length=128, d_model=256, n_layers=6, n_heads=8, bias=False)
MOE = dict(ffn="moe", n_experts=16, n_shared_experts=1, experts_per_token=2, n_expert_groups=4, groups_per_token=2)
TARGET = 1.5


def setup(batch: int, T: int):
    moe_cfg = ModelConfig(**BASE, **MOE)
    K, S, Fe = moe_cfg.experts_per_token, moe_cfg.n_shared_experts, moe_cfg.expert_width
    dense_cfg = ModelConfig(**BASE, ffn="swiglu", d_ff=(K + S) * Fe)
    rng = np.random.default_rng(0)
    p_moe, p_dense = moe.init(moe_cfg, rng), feedforward.init(dense_cfg, rng)
    p_moe["b_router"][:] = rng.normal(0, 0.02, moe_cfg.n_experts).astype(np.float32)
    x = rng.normal(size=(batch, T, moe_cfg.d_model)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    return moe_cfg, dense_cfg, p_moe, p_dense, x, dy


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args(argv)
    keep_freed_memory()  # as `GPT` does: large temporaries reuse the heap
    cfg, dense_cfg, p, pd, x, dy = setup(args.batch, args.tokens)
    C, E, K, S, Fe = cfg.d_model, cfg.n_experts, cfg.experts_per_token, cfg.n_shared_experts, cfg.expert_width
    N = args.batch * args.tokens
    print(f"bench_moe: Python {platform.python_version()}, numpy {np.__version__}, {time.strftime('%Y-%m-%d')}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"MoE: C {C}, E {E} routed + S {S} shared experts of F_e {Fe}, K {K}, groups {cfg.n_expert_groups} "
          f"(<= {cfg.groups_per_token} per token); dense SwiGLU peer: F = (K+S) F_e = {dense_cfg.ff_width}; "
          f"{args.batch} x {args.tokens} = {N} tokens")
    active_moe = C * E + (K + S) * 3 * C * Fe
    print(f"active parameters per token: MoE {active_moe:,} (router {C * E:,}), dense {3 * C * dense_cfg.ff_width:,}; "
          f"MoE total {sum(a.size for a in p.values()):,}\n")

    y_f, c_f = moe.forward(p, x, cfg, impl="fast")
    y_r, c_r = moe.forward(p, x, cfg, impl="reference")
    diff = max(float(np.abs(y_f - y_r).max()), float(np.abs(moe.backward(p, c_f, dy)[0] - moe.backward(p, c_r, dy)[0]).max()))
    load = c_f["hook_expert_load"]
    print(f"fast vs reference, max |diff| of y and dx (float32): {diff:.1e}; load per expert min {load.min()}, "
          f"max {load.max()}, mean {load.mean():.0f}\n")

    u = x.reshape(N, C)
    ids, gates, s = (c_f["hook_expert_ids"].reshape(N, K), c_f["hook_gates"].reshape(N, K),
                     c_f["hook_router_scores"].reshape(N, E))
    dgates = np.random.default_rng(1).normal(size=gates.shape).astype(np.float32)
    rc = c_f["routed"]
    xs, dout = u[rc["token"]], dy.reshape(N, C)[rc["token"]]  # what the experts read, already sorted

    def moe_step(impl):
        def step():
            _, cache = moe.forward(p, x, cfg, impl=impl)
            moe.backward(p, cache, dy)
        return step

    def dense_step():
        _, cache = feedforward.forward(pd, x, dense_cfg)
        feedforward.backward(pd, cache, dy)

    def router_step():
        moe_router.route(u, p["W_router"], p["b_router"], cfg)
        ds = moe_router.gates_backward(dgates, s, ids, gates, cfg.routed_scaling, cfg.normalize_gates)
        moe_router.scores_backward(ds, s, u, p["W_router"])

    def experts_step():
        for e, sl, _ in rc["experts"]:
            _, saved = moe._mlp_forward(xs[sl], *moe._expert(p, e))
            moe._mlp_backward(dout[sl], saved, *moe._expert(p, e))
        _, saved = moe._mlp_forward(u, p["W_in_shared"], p["W_out_shared"], p["W_gate_shared"])
        moe._mlp_backward(dy.reshape(N, C), saved, p["W_in_shared"], p["W_out_shared"], p["W_gate_shared"])

    t = interleaved_medians({"dense SwiGLU": dense_step, "MoE fast": moe_step("fast"),
                             "MoE reference": moe_step("reference"), "router only": router_step,
                             "expert MLPs only": experts_step}, args.repeats)
    print("forward + backward, one layer (median ms)")
    for label, ms in t.items():
        print(f"   {label:<18} {ms:8.2f}")
    ratio = t["MoE fast"] / t["dense SwiGLU"]
    rest = t["MoE fast"] - t["router only"] - t["expert MLPs only"]
    print(f"\n   MoE fast / dense: {ratio:.2f}x (target <= {TARGET}x): {'OK' if ratio <= TARGET else 'FAIL'}")
    print(f"   MoE reference / fast: {t['MoE reference'] / t['MoE fast']:.2f}x")
    print(f"   share of MoE fast: router {t['router only'] / t['MoE fast']:.0%}, expert MLPs "
          f"{t['expert MLPs only'] / t['MoE fast']:.0%}, dispatch and the rest (sort, gather, scatter, sum over K) "
          f"{rest / t['MoE fast']:.0%}")
    print(f"   routing overhead (router + dispatch) = {(t['MoE fast'] - t['expert MLPs only']) / t['MoE fast']:.0%} "
          f"of the MoE layer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
