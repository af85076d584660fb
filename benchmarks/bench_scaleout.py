"""Benchmark the scale-out simulator at DeepSeek-V3's envisioned size: 16,384 GPUs, one MoE dispatch step.

What it measures, each the median (and min) of ``--repeats`` runs
timed with ``time.perf_counter``:

1. building the 16,384-GPU multi-plane fat-tree (8 planes of 64-port switches:
   768 switches, 16,384 GPUs, every directed link as numpy arrays);
2. generating one MoE dispatch step: 4,096 tokens per GPU (67 M tokens), each
   routed to 8 of 256 experts on at most 4 nodes, in expert-parallel groups of
   ``--ep-nodes`` nodes (V3 trains with 8, i.e. 64-way EP). Decisions are drawn from
   ``--pool`` tokens routed exactly per step (see ``traffic.moe_dispatch``);
3. routing those flows with ECMP, adaptive routing and packet spraying, and
   computing the completion time; then a random permutation of all 16,384 GPUs
   (1 GB each), which crosses planes and spines, with the same three policies;
4. the whole step: 1 + 2 + 3 (ECMP), against the target "seconds, not minutes"
   (< 30 s on 2 cores).

The report goes to stdout, progress to stderr; ``--json PATH`` also writes every
figure (atomically). The exit code is 0 even when the target is missed (read the
PASS/FAIL column).

Run (from the repository root)::

    python benchmarks/bench_scaleout.py                 # ~1 minute with 3 repeats
    python benchmarks/bench_scaleout.py --repeats 5 --json scaleout.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from minitransformer.scaleout import metrics
from minitransformer.scaleout.routing import route
from minitransformer.scaleout.topology import mpft
from minitransformer.scaleout.traffic import moe_dispatch, permutation

TARGET_S = 30.0  # the whole step: "seconds, not minutes"


def timed(fn, repeats: int):
    """Run ``fn`` ``repeats`` times; return (last result, list of seconds)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tokens-per-gpu", type=int, default=4096)
    ap.add_argument("--ep-nodes", type=int, default=8)
    ap.add_argument("--pool", type=int, default=4096)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")

    rows = []  # (name, seconds list, note)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    log("building mpft(64) ...")
    topo, t_build = timed(lambda: mpft(64), args.repeats)
    rows.append(("build MPFT (16,384 GPUs, 768 switches)", t_build, f"{topo.n_links:,} directed links"))

    log(f"generating MoE dispatch: {args.tokens_per_gpu} tokens/GPU, EP over {args.ep_nodes} nodes ...")
    moe, t_moe = timed(lambda: moe_dispatch(topo.nodes, 8, tokens_per_gpu=args.tokens_per_gpu,
                                            ep_nodes=args.ep_nodes, pool=args.pool, seed=0), args.repeats)
    rows.append(("MoE dispatch flows (67 M tokens)" if args.tokens_per_gpu == 4096 else "MoE dispatch flows",
                 t_moe, f"{len(moe.dispatch):,} flows, {moe.copies['dedup'] / moe.tokens:.2f} network copies/token"))

    results = {}
    for policy in ("ecmp", "adaptive", "spray"):
        log(f"routing with {policy} ...")
        r, t_route = timed(lambda: route(topo, moe.dispatch, policy), args.repeats)
        T = metrics.completion_time(r)
        results[policy] = dict(time_s=T, per_gpu_GBps=metrics.per_gpu_bandwidth(r))
        rows.append((f"route + load ({policy})", t_route,
                     f"dispatch takes {T * 1e3:.2f} ms; {metrics.per_gpu_bandwidth(r):.0f} GB/s per GPU (logical)"))

    # the MoE groups above sit under one leaf each; a permutation exercises the spines and forwarding
    perm = permutation(topo.n_gpus, 1e9, seed=0)
    for policy in ("ecmp", "adaptive", "spray"):
        log(f"routing a 16,384-GPU permutation with {policy} ...")
        r, t_route = timed(lambda: route(topo, perm, policy), args.repeats)
        rows.append((f"route a permutation ({policy})", t_route,
                     f"{metrics.completion_time(r) * 1e3:.1f} ms for 1 GB per GPU; "
                     f"spine imbalance {metrics.spine_imbalance(r):.2f}"))

    step = [statistics.median(t_build) + statistics.median(t_moe) + statistics.median(rows[2][1])]
    rows.append(("whole step (build + generate + route ECMP)", step, f"target < {TARGET_S:.0f} s"))

    print(f"\nscale-out simulator, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}, {args.repeats} repeats\n")
    print(f"{'step':<46}{'median s':>10}{'min s':>9}   note")
    for name, times, note in rows:
        print(f"{name:<46}{statistics.median(times):>10.3f}{min(times):>9.3f}   {note}")
    ok = step[0] < TARGET_S
    print(f"\n{'PASS' if ok else 'FAIL'}: whole step {step[0]:.2f} s (target < {TARGET_S:.0f} s)")

    if args.json:
        data = dict(repeats=args.repeats, tokens_per_gpu=args.tokens_per_gpu, ep_nodes=args.ep_nodes, pool=args.pool,
                    rows=[dict(name=n, seconds=t, median=statistics.median(t), note=note) for n, t, note in rows],
                    dispatch=results, target_s=TARGET_S, passed=ok)
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(args.json)  # atomic
    return 0


if __name__ == "__main__":
    sys.exit(main())
