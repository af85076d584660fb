"""Benchmark data-parallel training: bytes on the wire, step time for 1 vs 2 ranks, the share of communication.

What it measures (one model preset, global batch ``--batch`` rows at the full context,
float32, OpenBLAS at 1 thread per process):

1. One process: the ordinary `Trainer` (no torch), median step time.
2. Two ranks under torchrun (gloo on the loopback), each training on half of the same
   global batch, in three settings:
   - ``overlap``: each bucket's all-reduce starts during backward (the default);
   - ``after``: all buckets start after backward, so the time spent waiting for them
     is the whole cost of communication;
   - ``zero1``: optimizer state sharded (reduce-scatter + all-gather).
   For each: median step time, the seconds per step spent waiting for collectives and
   their share of the step, the bytes of gradient reduced per step, and the bytes this
   rank actually wrote to its sockets per step (``wchar`` of ``/proc/self/io``, which
   counts every write system call, gloo's TCP sends included; no files are written
   while the steps run).
3. Checks against the model and the scale-out simulator: bytes reduced per step must
   equal the model's gradient (parameters x 4 bytes), and the measured wire bytes per
   rank are compared with the ring all-reduce's 2(N-1)/N x size per rank, taken from
   ``minitransformer.scaleout.traffic.ring_allreduce``.

Both ranks share this machine's cores, so "2 ranks" here shows the mechanism and its
overheads, not the speed-up of two machines. Run (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/bench_distributed.py
    python3 benchmarks/bench_distributed.py --preset small --steps 8 --json out.json

Needs torch (``pip install torch==2.13.0``, the CPU build). This is a report, not a test:
the exit code is 1 only if a byte count disagrees with the model or the simulator.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from minitransformer.core.config import ModelConfig  # noqa: E402
from minitransformer.model import GPT  # noqa: E402
from minitransformer.scaleout.traffic import ring_allreduce  # noqa: E402
from minitransformer.training import TrainConfig, Trainer  # noqa: E402

SETTINGS = {"overlap": {"overlap": True}, "after": {"overlap": False}, "zero1": {"zero1": True}}


def config_for(preset: str) -> ModelConfig:
    return ModelConfig.preset(preset)


def tokens_for(cfg: ModelConfig) -> np.ndarray:
    return np.random.default_rng(0).integers(0, cfg.vocab_size, 200_000)


def wchar() -> int:
    with open("/proc/self/io", encoding="ascii") as f:
        return int(next(line for line in f if line.startswith("wchar")).split()[1])


def timed_steps(trainer, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        trainer.train_step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    return times


def train_config(args) -> TrainConfig:
    return TrainConfig(steps=args.warmup + args.steps, batch_size=args.batch, eval_every=0, warmup=1)


def worker(args) -> None:
    """One rank (under torchrun), or the single process: run the setting, rank 0 writes the figures to ``args.out``."""
    from minitransformer.training import distributed

    if args.setting == "one":  # the ordinary Trainer, no torch
        cfg = config_for(args.preset)
        trainer = Trainer(GPT(cfg, seed=0), tokens_for(cfg), config=train_config(args), log=None)
        times = timed_steps(trainer, args.warmup, args.steps)
        Path(args.out).write_text(json.dumps({"step_s": statistics.median(times), "min_s": min(times)}))
        return

    ctx = distributed.init_from_env(timeout=120)
    cfg = config_for(args.preset)
    trainer = distributed.DistributedTrainer(GPT(cfg, seed=0), tokens_for(cfg), config=train_config(args), log=None,
                                             ctx=ctx, bucket_mb=args.bucket_mb, **SETTINGS[args.setting])
    for _ in range(args.warmup):
        trainer.train_step()
    w0, times = wchar(), timed_steps(trainer, 0, args.steps)
    wire = (wchar() - w0) / args.steps
    waits = trainer.comm_seconds[-args.steps:]
    if ctx.rank == 0:
        out = {"step_s": statistics.median(times), "min_s": min(times), "comm_s": statistics.median(waits),
               "reduced_bytes": trainer.comm_bytes[-1], "wire_bytes": wire, "params": int(trainer.opt.buffer.size),
               "buckets": 0 if trainer.zero1 else len(trainer.buckets.buckets),
               "adam_bytes": trainer.optimizer_state_bytes()}
        Path(args.out).write_text(json.dumps(out))
    distributed.shutdown()


def run(args, setting: str) -> dict:
    """Run one setting in fresh processes (1 BLAS thread each): the single process, or 2 ranks under torchrun."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "r.json"
        launch = [] if setting == "one" else ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
        cmd = [sys.executable, *launch, __file__, "--worker", "--setting", setting, "--out", str(out), "--preset", args.preset, "--batch",
               str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup), "--bucket-mb",
               str(args.bucket_mb)]
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the run {setting!r} failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=16, help="global batch (rows), split over the ranks")
    p.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bucket-mb", type=float, default=1.0)
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--setting", default="overlap", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    cfg = config_for(args.preset)
    print(f"preset {args.preset}: {GPT(cfg).num_params:,} parameters; global batch {args.batch} x "
          f"{cfg.context_length} tokens; {args.steps} timed steps after {args.warmup} warm-up; "
          f"buckets of {args.bucket_mb} MB; OpenBLAS 1 thread per process", flush=True)
    one = run(args, "one")
    rows = {"1 process": one} | {f"2 ranks, {s}": run(args, s) for s in SETTINGS}
    print(f"\n{'setting':<20}{'step ms':>9}{'min ms':>9}{'vs 1 proc':>10}{'comm ms':>9}{'comm %':>8}"
          f"{'reduced B/step':>16}{'wire B/step':>13}{'Adam B/rank':>13}")
    for name, r in rows.items():
        comm = r.get("comm_s")
        print(f"{name:<20}{r['step_s'] * 1e3:>9.1f}{r['min_s'] * 1e3:>9.1f}{one['step_s'] / r['step_s']:>9.2f}x"
              + (f"{comm * 1e3:>9.1f}{comm / r['step_s']:>8.1%}{r['reduced_bytes']:>16,}{r['wire_bytes']:>13,.0f}"
                 f"{r['adam_bytes']['per_rank']:>13,}" if comm is not None else ""))
    r = rows["2 ranks, overlap"]
    grad_bytes = r["params"] * 4
    ring = ring_allreduce(2, 1, grad_bytes)  # 2 nodes of 1 GPU: one ring of 2
    predicted = float(ring.bytes[0])
    ok = r["reduced_bytes"] == grad_bytes
    print(f"\ngradient bytes of the model ({r['params']:,} parameters x 4): {grad_bytes:,}; bytes all-reduced per "
          f"step: {r['reduced_bytes']:,} ({r['buckets']} buckets): {'equal' if ok else 'DIFFERENT'}")
    print(f"ring all-reduce per rank, 2(N-1)/N x size (scaleout.traffic.ring_allreduce): {predicted:,.0f} B; "
          f"measured socket writes per rank: {r['wire_bytes']:,.0f} B ({r['wire_bytes'] / predicted:.3f}x); "
          f"with ZeRO-1 (reduce-scatter + all-gather): {rows['2 ranks, zero1']['wire_bytes']:,.0f} B")
    z = rows["2 ranks, zero1"]["adam_bytes"]
    print(f"ZeRO-1: Adam's moments {z['per_rank']:,} B per rank instead of {z['unsharded']:,} (saves {z['saved']:,})")
    print("note: both ranks share this machine's cores: the step times show the mechanism and its overheads, "
          "not the speed-up of two machines.")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "ring_bytes_per_rank": predicted}, indent=1))
    return 0 if ok and abs(r["wire_bytes"] / predicted - 1) < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
