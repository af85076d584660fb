# Source of notebooks/11_one_process_to_many.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 11_one`.

# %% [markdown]
# # From one process to many · data parallelism with the numpy model
#
# One process trains the course model in minutes. A model a hundred times larger,
# or a corpus a hundred times longer, needs more machines, and the simplest way to
# use them is **data parallelism**: every process holds the whole model, each
# works on different rows of the batch, and after backward they add up their
# gradients so that every process makes the same update. This notebook takes the
# numpy model from one process to several: why the sum of the pieces is exactly
# the gradient of the whole, what is sent over the wire and how many bytes, how a
# real run with PyTorch's `torch.distributed` (gloo, on this CPU) reproduces one
# process to 1e-10, what sharding the optimizer state saves (ZeRO-1), and when to
# hand the model over to GPUs.
#
# Everything runs offline in well under two minutes on two cores. The cells that
# launch real processes need PyTorch (`pip install torch`, the CPU build); without
# it they say so and the rest still runs.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

import minitransformer
from minitransformer.core.config import ModelConfig
from minitransformer.core.tree import flatten, set_path
from minitransformer.model import GPT
from minitransformer.scaleout.traffic import ring_allreduce
from minitransformer.training import AdamW, get_batch
from minitransformer.training.distributed import GradBuckets, backward_order
from minitransformer.training.optimizer import ShardedAdamW

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small
ROOT = Path(minitransformer.__file__).resolve().parents[1]
try:
    import torch  # noqa: F401  (only for the cells that launch real ranks)

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False
print("torch available:", HAVE_TORCH)

# %% [markdown]
# ## 1. The concept: the same model, different rows
#
# The loss of a batch of $B$ rows is the mean of the rows' losses. Cut the batch
# into $N$ equal shards of $B/N$ rows, one per process (a **rank**). The mean over
# all rows is the mean of the shard means:
#
# $$L = \frac{1}{B}\sum_{i=1}^{B} \ell_i
#     = \frac{1}{N}\sum_{r=1}^{N} \underbrace{\frac{N}{B}\sum_{i \in r} \ell_i}_{L_r},
# \qquad\text{so}\qquad
# \nabla L = \frac{1}{N}\sum_{r=1}^{N} \nabla L_r .$$
#
# Differentiation is linear, so each rank computes the gradient of its own shard,
# scales it by $1/N$, and the ranks **add** their gradients: the result is the
# gradient one process would compute on the whole batch. The adding is a
# collective operation called **all-reduce**: everyone contributes an array,
# everyone receives the sum. Then every rank runs the same optimizer step on the
# same parameters with the same gradient, and the replicas stay identical without
# ever sending a parameter.
#
# ## 2. Tiny arrays: a linear model by hand
#
# A linear model $\hat y = XW$ with a squared error, four rows, two ranks:

# %%
rng = np.random.default_rng(0)
X, Y, W = rng.standard_normal((4, 3)), rng.standard_normal((4, 2)), rng.standard_normal((3, 2))


def grad_W(X, Y, W):
    """Gradient of mean((XW - Y)^2) over rows (and outputs) with respect to W."""
    return 2 * X.T @ (X @ W - Y) / Y.size  # (3, 4) @ (4, 2) -> (3, 2)


whole = grad_W(X, Y, W)
shards = [grad_W(X[r * 2:(r + 1) * 2], Y[r * 2:(r + 1) * 2], W) for r in range(2)]  # 2 rows per rank
summed = sum(g / 2 for g in shards)  # each rank scales by 1/N, the all-reduce adds
print("gradient of the whole batch:\n", whole.round(4))
print("sum of the shards' gradients / N:\n", summed.round(4))
print("max |difference|:", np.abs(whole - summed).max())

# %% [markdown]
# ## 3. The course model: N ranks simulated in one process
#
# The same holds for the whole transformer, because every operation that mixes
# positions (attention) stays inside a row, and LayerNorm normalises each position
# on its own: nothing in the forward pass mixes the rows of a batch. (BatchNorm
# would: its statistics are over the batch, and data parallelism then changes the
# model unless the statistics are synchronised too.)
#
# Below, the `toy` model in float64, one global batch of 8 rows; `shard_grads`
# plays $N$ ranks in a loop: each computes the gradient of its rows, scaled by
# $1/N$, and the sum plays the all-reduce. It is compared with one process.

# %%
def float64_model(preset="toy", seed=0):
    model = GPT(ModelConfig.preset(preset), seed=seed)
    for name, a in flatten(model.params).items():
        set_path(model.params, name, a.astype(np.float64))
    return model


def flat_grads(model, x, y):
    model.loss(x, y)
    return flatten(model.backward())


def shard_grads(model, x, y, N):
    """The all-reduced gradient of N simulated ranks: sum over ranks of (gradient of its rows) / N."""
    b = len(x) // N
    parts = [flat_grads(model, x[r * b:(r + 1) * b], y[r * b:(r + 1) * b]) for r in range(N)]
    return {k: sum(p[k] for p in parts) / N for k in parts[0]}


model = float64_model()
tokens = np.random.default_rng(1).integers(0, 64, 5000)
x, y = get_batch(tokens, 8, 16, np.random.default_rng(2))  # (8, 16) each
one = flat_grads(model, x, y)
for N in (1, 2, 4, 8):
    many = shard_grads(model, x, y, N)
    print(f"N = {N}: max |one process - {N} ranks| over every gradient = "
          f"{max(np.abs(one[k] - many[k]).max() for k in one):.1e}")

# %% [markdown]
# Differences of 1e-16 are float64 rounding: the sum is taken in a different
# order. Training keeps them small, because every rank feeds the same summed
# gradient into the same AdamW step. (Adam divides each gradient by its own
# running scale, which magnifies rounding a little where a gradient is nearly
# zero, but nowhere near the 1e-10 the tests demand.) Five steps, one process
# against four simulated ranks:

# %%
def train_simulated(N, steps=5, seed=0):
    model = float64_model(seed=seed)
    opt = AdamW(model.params, lr=1e-2)
    batches = np.random.default_rng(3)
    for _ in range(steps):
        x, y = get_batch(tokens, 8, 16, batches)  # every rank draws the same global batch
        opt.step(opt.gather(shard_grads(model, x, y, N)))
    return opt.buffer.copy()


p0 = AdamW(float64_model().params).buffer  # the initial parameters, in the optimizer's order
p1, p4 = train_simulated(1), train_simulated(4)
print(f"after 5 AdamW steps the parameters moved by up to {np.abs(p1 - p0).max():.3f}; "
      f"max |1 process - 4 ranks| = {np.abs(p1 - p4).max():.1e}")

# %% [markdown]
# ## 4. What is sent: buckets, in the order backward produces them
#
# A rank could wait for the whole backward pass and then all-reduce one big
# array. Real systems (PyTorch's DistributedDataParallel, and
# `minitransformer.training.distributed`) do better: backward finishes the output
# head first and the embedding last, and `model.backward(on_grads=...)` reports
# each part as soon as its gradients are final. They are copied into a flat
# buffer laid out in that order and cut into **buckets**; each full bucket's
# all-reduce starts at once, in the background, while backward computes the
# layers below. (The optimizer keeps its own flat buffer in another order, decayed
# matrices first, so the summed gradient is copied across once at the end.)
#
# The order backward reports, for the `tiny` model, and its buckets at 1 MB:

# %%
tiny = GPT(ModelConfig.preset("tiny"), seed=0)
ids = np.random.default_rng(0).integers(0, 1024, (2, 33))
tiny.loss(ids[:, :-1], ids[:, 1:])
calls = []
tiny.backward(on_grads=lambda prefix, g: calls.append((prefix, sum(a.size for a in flatten(g).values()))))
print("backward reports:", ", ".join(f"{p} ({n:,})" for p, n in calls))
buckets = GradBuckets(AdamW(tiny.params), backward_order(tiny), bucket_bytes=2**20, scale=1.0)
for k, b in enumerate(buckets.buckets):
    names = [n for n, s in buckets.slices.items() if b.start <= s.start < b.stop]
    print(f"bucket {k}: {(b.stop - b.start) * 4:>9,} bytes, {names[0]} ... {names[-1]}")

# %% [markdown]
# ## 5. How an all-reduce moves the bytes: the ring
#
# The classic algorithm (Patarasuk & Yuan, 2009) puts the $N$ ranks in a ring and
# cuts the array into $N$ chunks. In $N-1$ steps of **reduce-scatter**, each rank
# sends one chunk to its successor, which adds it to its own; afterwards rank $r$
# holds the full sum of one chunk. In $N-1$ steps of **all-gather** the summed
# chunks travel around the ring once more. Each rank sends $2(N-1)$ chunks of
# size $S/N$:
#
# $$\text{bytes sent per rank} = \frac{2(N-1)}{N}\, S ,$$
#
# almost $2S$ however many ranks there are: the ring uses every link at once.
# Here it is in numpy, on four ranks' arrays:

# %%
def ring_allreduce_numpy(arrays):
    """Ring all-reduce of N equal arrays; returns (each rank's result, elements each rank sent)."""
    N = len(arrays)
    chunks = [np.array_split(a.astype(np.float64), N) for a in arrays]  # chunks[rank][c]
    sent = [0] * N
    for step in range(N - 1):  # reduce-scatter: rank r sends chunk (r - step) to r + 1
        outgoing = [(r, (r - step) % N, chunks[r][(r - step) % N].copy()) for r in range(N)]
        for r, c, data in outgoing:
            chunks[(r + 1) % N][c] += data
            sent[r] += data.size
    for step in range(N - 1):  # all-gather: rank r passes the finished chunk (r + 1 - step)
        outgoing = [(r, (r + 1 - step) % N, chunks[r][(r + 1 - step) % N].copy()) for r in range(N)]
        for r, c, data in outgoing:
            chunks[(r + 1) % N][c] = data
            sent[r] += data.size
    return [np.concatenate(c) for c in chunks], sent


arrays = [np.random.default_rng(r).standard_normal(12) for r in range(4)]
results, sent = ring_allreduce_numpy(arrays)
print("every rank holds the sum:", all(np.allclose(res, sum(arrays)) for res in results))
print(f"elements sent per rank: {sent} = 2(N-1)/N x 12 = {2 * 3 / 4 * 12:.0f}")
print("the scale-out simulator's ring (4 nodes x 1 GPU, 12 elements):",
      ring_allreduce(4, 1, 12.0).bytes.tolist())

# %% [markdown]
# ## 6. A real run: two ranks with torch.distributed (gloo)
#
# Now two real processes. `torchrun` starts them and tells each its `RANK` and
# `WORLD_SIZE`; `minitransformer train` sees them, joins a gloo process group
# (TCP on this machine), broadcasts rank 0's initial parameters, and trains with
# the bucketed all-reduce above. Each rank takes its rows of the same seeded
# global batch. We train 6 steps in float64 with two ranks, and 6 steps in one
# process, and compare the checkpoints (rank 0 writes it; the format is the one a
# single process writes).

# %%
RUN = ["--preset", "toy", "--corpus", "tiny", "--vocab-size", "300", "--steps", "6", "--batch-size", "8",
       "--dtype", "float64"]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
           PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
work = Path(tempfile.mkdtemp(prefix="dp-"))


def torchrun(*args, nproc=2):
    """``torchrun --standalone --nproc-per-node 2 ARGS`` (as ``python -m torch.distributed.run``); rank 0's output."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return done.stdout


if HAVE_TORCH:
    subprocess.run([sys.executable, "-m", "minitransformer", "train", *RUN, "--out", str(work / "one")],
                   env=ENV, capture_output=True, check=True)
    log = torchrun("-m", "minitransformer", "train", *RUN, "--out", str(work / "two"))
    print("\n".join(line for line in log.splitlines() if "data parallel" in line or "step" in line))
    a, b = np.load(work / "one" / "model.npz"), np.load(work / "two" / "model.npz")
    diff = max(np.abs(a[k] - b[k]).max() for k in a.files if k.startswith("params."))
    print(f"\nmax |1 process - 2 ranks| over every parameter after 6 steps (float64): {diff:.1e}")
else:
    print("torch is not installed: `pip install torch` (CPU build) to launch real ranks")

# %% [markdown]
# ## 7. Measured communication beside the simulator
#
# How many bytes did the ranks really exchange? The benchmark's worker (the one
# `benchmarks/bench_distributed.py` launches) trains the `tiny` model on two ranks
# and reads how many bytes each rank wrote to its sockets (Linux counts every
# write in `/proc/self/io`). The prediction: the gradient is 940,800 float32
# numbers, and a ring all-reduce over 2 ranks sends $2(N-1)/N = 1$ times that per rank.

# %%
grad_bytes = tiny.num_params * 4
predicted = float(ring_allreduce(2, 1, grad_bytes).bytes[0])
if HAVE_TORCH and Path("/proc/self/io").exists():
    out = work / "bench.json"
    torchrun(str(ROOT / "benchmarks" / "bench_distributed.py"), "--worker", "--setting", "overlap", "--preset", "tiny",
             "--steps", "3", "--warmup", "1", "--out", str(out))
    measured = json.loads(out.read_text())
    print(f"gradient: {grad_bytes:,} bytes; all-reduced per step: {measured['reduced_bytes']:,} bytes "
          f"in {measured['buckets']} buckets")
    print(f"simulator's ring, bytes per rank: {predicted:,.0f}; measured socket writes per rank: "
          f"{measured['wire_bytes']:,.0f} ({measured['wire_bytes'] / predicted:.3f}x)")
    print(f"step {measured['step_s'] * 1e3:.0f} ms, of which {measured['comm_s'] * 1e3:.1f} ms waiting for the other "
          f"rank ({measured['comm_s'] / measured['step_s']:.0%})")
else:
    print(f"simulator's ring, bytes per rank: {predicted:,.0f} (launching real ranks needs torch on Linux)")

# %% [markdown]
# The few kilobytes above the prediction are gloo's headers and the one-number
# all-reduce of the loss. On this machine both ranks share two cores, so the
# step time shows the overheads, not what two machines would gain; the benchmark
# reports 1 against 2 ranks with one thread each.
#
# ## 8. ZeRO-1: shard the optimizer's state
#
# Every rank keeping a full copy of everything is wasteful. For each parameter,
# mixed-precision training with Adam keeps a 16-bit weight and gradient and 12
# bytes of float32 state (a master weight and the two moments); here, in
# float32 throughout, 4 bytes each of weight, gradient, and two moments. ZeRO
# (Rajbhandari et al., 2020) shards these across the ranks. Stage 1 shards the
# optimizer state: rank $r$ keeps the moments of its $1/N$ slice of the flat
# buffer only. A step becomes: **reduce-scatter** the gradient (each rank receives
# the sum of its slice), update the slice, **all-gather** the parameters. That is
# exactly the two halves of a ring all-reduce, so in principle it sends the same
# bytes (NCCL's reduce-scatter does; gloo's sends as much as a whole all-reduce, so
# the benchmark measures 1.5 times the ring on this CPU), and the moments take
# $2/N$ of the memory. Each rank's slice updates exactly as the whole would,
# because AdamW is elementwise:

# %%
ref_model, ref_rng = GPT(ModelConfig.preset("toy"), seed=0), np.random.default_rng(5)
full = AdamW(ref_model.params, lr=1e-2)
ranks = [ShardedAdamW(GPT(ModelConfig.preset("toy"), seed=0).params, r, 4, lr=1e-2) for r in range(4)]
for _ in range(3):
    g = ref_rng.standard_normal(full.buffer.size).astype(np.float32)
    full.step(g)
    for s in ranks:
        s.step(g[s.lo:s.hi])  # only my slice of the (reduce-scattered) gradient
print("slices joined == full update, bit for bit:",
      np.array_equal(np.concatenate([s.buffer[s.lo:s.hi] for s in ranks]), full.buffer))
print(f"Adam moments per rank: {ranks[0].m.nbytes + ranks[0].v.nbytes:,} bytes instead of "
      f"{full.m.nbytes + full.v.nbytes:,}")

# %%
n_small = GPT(ModelConfig.preset("small")).num_params
Ns = np.array([1, 2, 4, 8, 16])
plain = np.full(len(Ns), 4 * n_small * 4)  # weights, gradient, m, v: 4 bytes each
zero1 = 2 * 4 * n_small + 2 * 4 * np.ceil(n_small / Ns)
fig = Figure(figsize=(8, 2.6))
ax1, ax2 = fig.subplots(1, 2)
ax1.plot(Ns, plain / 1e6, "o-", label="replicated (plain data parallel)")
ax1.plot(Ns, zero1 / 1e6, "s-", label="ZeRO-1 (moments sharded)")
ax1.set(xscale="log", xlabel="ranks N", ylabel="MB per rank", title=f"memory per rank, small ({n_small:,} params)")
ax1.set_xticks(Ns, [str(n) for n in Ns])
ax1.legend(fontsize=8)
ring_share = [float(ring_allreduce(int(n), 1, 1.0).bytes[0]) if n > 1 else 0.0 for n in Ns]
ax2.plot(Ns, ring_share, "o-")
ax2.axhline(2, color="gray", lw=0.8, ls="--")
ax2.set(xscale="log", xlabel="ranks N", ylabel="bytes sent / gradient bytes", title="ring all-reduce per rank",
        ylim=(0, 2.2))
ax2.set_xticks(Ns, [str(n) for n in Ns])
fig.tight_layout()
fig

# %% [markdown]
# The left panel: the two moments are half of the memory; sharding them saves a
# quarter at 2 ranks, and tends to a half as $N$ grows (what stays is the weights
# and the gradient; ZeRO-2 and -3 shard those too). The right: the bytes each rank
# sends never exceed twice the gradient, however many ranks there are, which is
# why data parallelism scales as far as the network's bandwidth allows.
#
# A real run with `--zero1` (two ranks, float32) reports its memory:

# %%
if HAVE_TORCH:
    log = torchrun("-m", "minitransformer", "train", *RUN[:-2], "--zero1", "--out", str(work / "zero1"))
    print(next(line for line in log.splitlines()[::-1] if "data parallel" in line))
    a, b = np.load(work / "one" / "model.npz"), np.load(work / "zero1" / "model.npz")
    print(f"max |1 process (float64) - 2 ranks with ZeRO-1 (float32)|: "
          f"{max(np.abs(a[k] - b[k]).max() for k in a.files if k.startswith('params.')):.1e} (float32 rounding)")

# %% [markdown]
# ## 9. When to hand off to GPUs, and how
#
# Data parallelism on CPUs teaches the mechanism; it does not make numpy fast.
# A training step costs about $6 \times$ parameters $\times$ tokens FLOPs. Numpy
# reaches about 100 GFLOP/s per core here; one data-centre GPU does a few hundred
# TFLOP/s, three orders of magnitude more. Once a run takes hours here, hand it
# over: export the weights in a format `transformers` knows, fine-tune there with
# DistributedDataParallel under `torchrun` (NCCL between GPUs), and load the result
# back into numpy to trace it. The same commands run on CPU processes, which is
# how they are tested. The first trains the tiny model whose checkpoint
# (`runs/tiny/model.npz`, with `runs/tiny/tokenizer.json`) the others read:
#
# ```bash
# minitransformer train --preset tiny --out runs/tiny
# python3 -m minitransformer.interop.handoff export --checkpoint runs/tiny/model.npz --format gpt2 --out tiny-gpt2
# torchrun --standalone --nproc-per-node 2 -m minitransformer.interop.handoff finetune tiny-gpt2 \
#     --out tiny-gpt2-ft --tokenizer runs/tiny/tokenizer.json --steps 20
# python3 -m minitransformer.interop.handoff back tiny-gpt2-ft --save tiny-gpt2-ft-numpy
# ```

# %%
flops_step = 6 * tiny.num_params * 16 * 128  # tiny, batch 16 x 128 tokens (attention left out)
for name, rate in [("numpy, one core", 100e9), ("numpy, two cores", 200e9), ("one GPU, bf16 (~40% of 1 PFLOP/s)", 400e12)]:
    print(f"{name:>36}: {flops_step / rate * 1e3:9.3f} ms per tiny step, "
          f"{6 * 1e9 * 1e9 / rate / 3600:10.1f} h for 1B tokens through a 1B-parameter model")

# %% [markdown]
# ## 10. Pitfalls
#
# - **Every rank must call every collective, in the same order.** A rank that
#   skips one (say, only rank 0 gathers the ZeRO-1 state for a checkpoint) leaves
#   the others waiting until the timeout. Checkpoint saving is collective here.
# - **The same global batch, different rows.** If each rank drew its own random
#   batch with the same seed, all ranks would train on the *same* rows; if with
#   different seeds, the run could not be compared with one process.
# - **A mean of means is the global mean only for equal shards.** With padding
#   tokens ignored in the loss (`ignore_index`), shards hold different numbers of
#   real tokens: weight each rank's loss by its token count, not by $1/N$.
# - **Dropout needs a stream per rank.** Here rank $r > 0$ derives its masks from
#   (seed, rank, step), so a resumed run gets them back.
# - **float32 sums are not associative.** Two ranks add in another order than one
#   process: equal to rounding in float32, to 1e-16 in float64 (section 6).
# - **Oversubscription.** Two ranks with two BLAS threads each on two cores spin
#   against each other: one thread per rank (`OPENBLAS_NUM_THREADS=1`).
# - **A dead rank must not hang the others.** Collectives have a timeout
#   (`--dist-timeout`); gloo notices a closed connection at once, and the
#   survivors stop with an error naming the step. Checkpoints are written
#   atomically, so the last one is intact for `--resume`.

# %% [markdown]
# ## 11. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`,
# and its check prints *not done yet*, so the notebook still runs top to bottom.
# Replace the stub, re-run the check, and aim for *passed*.
#
# - **core 1**: which rows are mine?
# - **core 2**: bytes a ring all-reduce sends per rank.
# - **optional 3**: ZeRO-1's slice of the flat buffer.
# - **stretch 4**: weight the shard losses when shards hold different numbers of tokens.

# %%
def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# **Core 1.** Write `my_rows(B, N, r)` returning the `slice` of the global batch's
# rows that rank `r` of `N` trains on (B divisible by N; rank 0 takes the first rows).

# %%
def my_rows(B, N, r):
    raise NotImplementedError  # your code here


def test_my_rows():
    for B, N in [(8, 1), (8, 2), (16, 4), (12, 3)]:
        rows = np.concatenate([np.arange(B)[my_rows(B, N, r)] for r in range(N)])
        assert rows.tolist() == list(range(B)), (B, N)
        assert all(len(np.arange(B)[my_rows(B, N, r)]) == B // N for r in range(N))
    m = float64_model()
    x, y = get_batch(tokens, 8, 16, np.random.default_rng(7))
    parts = [flat_grads(m, x[my_rows(8, 2, r)], y[my_rows(8, 2, r)]) for r in range(2)]
    whole = flat_grads(m, x, y)
    assert max(np.abs(whole[k] - (parts[0][k] + parts[1][k]) / 2).max() for k in whole) < 1e-12


check("core 1 (my_rows)", test_my_rows)

# %% [markdown]
# **Core 2.** Write `my_ring_bytes(size, N)`: the bytes each rank sends in a ring
# all-reduce of `size` bytes over `N` ranks. It must agree with the simulator.

# %%
def my_ring_bytes(size, N):
    raise NotImplementedError  # your code here


def test_my_ring_bytes():
    for N in (2, 3, 4, 8, 64):
        assert abs(my_ring_bytes(1000.0, N) - ring_allreduce(N, 1, 1000.0).bytes[0]) < 1e-9, N
    _, sent = ring_allreduce_numpy([np.zeros(24) for _ in range(3)])
    assert sent == [my_ring_bytes(24, 3)] * 3


check("core 2 (my_ring_bytes)", test_my_ring_bytes)

# %% [markdown]
# **Optional 3.** ZeRO-1 gives rank `r` of `N` the slice `[lo, hi)` of a flat
# buffer of `n` numbers: slices of `ceil(n / N)`, the last one shorter. Write
# `my_shard(n, N, r)` returning `(lo, hi)`.

# %%
def my_shard(n, N, r):
    raise NotImplementedError  # your code here


def test_my_shard():
    for n, N in [(10, 3), (28032, 4), (7, 7), (5, 8)]:
        bounds = [my_shard(n, N, r) for r in range(N)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(bounds[r][1] == bounds[r + 1][0] for r in range(N - 1))
    opt = ShardedAdamW(GPT(ModelConfig.preset("toy"), seed=0).params, 2, 3)
    assert my_shard(opt.buffer.size, 3, 2) == (opt.lo, opt.hi)


check("optional 3 (my_shard)", test_my_shard)

# %% [markdown]
# **Stretch 4.** Padding: some targets are `-100` (ignored). The loss is the mean
# over the *real* targets of the whole batch. Each rank knows its shard's mean
# loss `losses[r]` and its count of real targets `counts[r]`. Write
# `my_global_loss(losses, counts)`, and check that it is what one process computes
# while the plain mean of the shard means is not.

# %%
def my_global_loss(losses, counts):
    raise NotImplementedError  # your code here


def test_my_global_loss():
    m = float64_model()
    x, y = get_batch(tokens, 8, 16, np.random.default_rng(9))
    y = y.copy()
    y[:4, 5:] = -100  # the first rank's rows are mostly padding
    whole = m.loss(x, y)
    losses = [m.loss(x[r * 4:(r + 1) * 4], y[r * 4:(r + 1) * 4]) for r in range(2)]
    counts = [int((y[r * 4:(r + 1) * 4] != -100).sum()) for r in range(2)]
    assert abs(my_global_loss(losses, counts) - whole) < 1e-12
    assert abs(np.mean(losses) - whole) > 1e-3  # the naive mean of means is wrong here


check("stretch 4 (my_global_loss)", test_my_global_loss)

# %% [markdown]
# ## 12. Further reading
#
# - Pitch Patarasuk, Xin Yuan (2009). *Bandwidth optimal all-reduce algorithms
#   for clusters of workstations.* J. Parallel Distrib. Comput. The ring.
# - Shen Li et al. (2020). *PyTorch Distributed: Experiences on Accelerating Data
#   Parallel Training.* VLDB. Buckets, overlap with backward, the order of gradients.
# - Samyam Rajbhandari, Jeff Rasley, Olatunji Ruwase, Yuxiong He (2020). *ZeRO:
#   Memory Optimizations Toward Training Trillion Parameter Models.* SC20.
# - Priya Goyal et al. (2017). *Accurate, Large Minibatch SGD: Training ImageNet
#   in 1 Hour.* The learning rate when the global batch grows.
#
# In the package: `minitransformer/training/distributed.py` (the data-parallel
# trainer), `minitransformer/interop/handoff.py` (the hand-off to PyTorch),
# `benchmarks/bench_distributed.py` (the measurements), and notebook 08 for what
# the same all-reduce costs on a 16,384-GPU network.
