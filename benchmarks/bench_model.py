"""Benchmark the numpy GPT: training speed against the matmul peak and PyTorch, generation, memory.

What it measures, all in one run, float32 throughout, each figure the median
(and min) of ``--repeats`` timed runs (``time.perf_counter``; warmup runs are
excluded; a garbage collection before every run). Every ratio compares two
figures measured in the same run, on the same machine:

1. The matmul peak: numpy ``np.matmul(a, b, out=c)`` on square float32 matrices
   (1024, 2048, 3072), one call repeated; the peak is the best median GFLOP/s.
   (PyTorch's ``torch.mm`` on 2048x2048 is shown too, for information.)
2. A training step, ``loss = model.loss(x, y); g = opt.gather(model.backward());
   opt.step(g)`` with ``AdamW(model.params, lr=3e-4, betas=(0.9, 0.95),
   weight_decay=0.1)``, for the presets ``toy`` (batch 16, its context 16),
   ``tiny`` (vocab 1024, context 128, d 128, 4 layers, 4 heads) and ``small``
   (vocab 4096, context 256, d 256, 6 layers, 8 heads), batch 16 at the full
   context, default variants (learned positions, LayerNorm, GELU, tied
   embeddings, biases), as ``GPT`` runs it by default (the batch cut into one
   shard per core, one thread each: `core/cores.py`), and with ``threads=1``
   (the plain loop) for comparison. Reported: step time, tokens/s, model FLOPs
   per step, achieved GFLOP/s and its fraction of the measured numpy matmul peak
   (targets: at least 45 % on tiny, 50 % on small). The steps (ours, ours on one
   thread, PyTorch's) and the peak's product are timed round-robin, one run of
   each per round, and the fraction uses the peak timed in those same rounds:
   on a shared virtual machine the speed drifts from minute to minute, and the
   ratio of two things timed together is what stays meaningful:

       FLOPs/step = 6 * N_mm * B*T  +  3 * 2 * 2 * B * L * T^2 * C
       N_mm = L * (4*C^2 + 2*C*F) + C*V   (weights that enter a matmul: W_Q, W_K,
              W_V, W_O, W_in, W_out per layer, and the head W_E^T once; biases,
              norms, W_pos and the embedding lookup are not matmuls)

   The attention term counts the full T x T square (q @ k^T and pattern @ v,
   2*T*T*C FLOPs each per layer and sequence, forward + 2x backward), the usual
   convention (PaLM's model-FLOPs utilisation counts it so); the training path
   skips the tiles above the causal diagonal (it computes 5/8 of the square)
   and recomputes the pattern in backward, which is not counted either. The
   attention term is 12 % of tiny's FLOPs and 12 % of small's.

   Where the time goes (``bench_breakdown.py``), for tiny and small: the step's
   parallel part (every shard's loss and backward side by side) and its serial
   tail (gather, then AdamW), against one shard run alone on one thread; then that
   shard stage by stage (embedding, positions, norms, attention, MLP, residual
   adds, head, loss, the backward of each), timed inside a walk composed exactly
   as `model.forward`/`backward` compose it (its loss checked equal to
   ``model.loss``); and by kind of work, each timed alone at the shard's shapes
   on one thread: the dense matmuls (with their GFLOP/s), the attention tiles'
   matmuls and their softmax, LayerNorm, GELU, cross-entropy, and the rest
   (memory traffic: copies, transposes, residual adds, fresh arrays; and Python
   overhead) = the shard's time minus their sum; and the same kinds timed in
   place, inside the shard's own loss and backward, where each carries what the
   shard's other work does to its caches (the rest is then the copies, residual
   adds and Python between them).
3. A PyTorch eager reference of the SAME model (``TorchGPT`` below: pre-norm
   blocks, LayerNorm -> causal self-attention with separate q/k/v Linear layers
   with bias -> residual, LayerNorm -> MLP with GELU(tanh), 4x -> residual;
   learned positions; final LayerNorm; head tied to the embedding). The numpy
   weights are loaded into it through an explicit name map (numpy stores linear
   weights (in, out), torch (out, in): they are transposed). Checked first, on
   a model whose biases and norm parameters are perturbed away from their
   initial 0/1 so that every tensor matters: the logits must match the numpy
   model's to 1e-4 (max abs diff), and the gradients of every parameter are
   compared too. Then its training step is timed with
   ``torch.optim.AdamW(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)``
   (default implementation; weight decay only on 2-D tensors, as our AdamW
   does), the same batch, ``torch.set_num_threads(2)``. Attention is timed both
   ways, ``F.scaled_dot_product_attention(is_causal=True)`` and explicit
   matmul + mask + softmax; the faster one is the reference (reported).
   Ours / torch is reported for information.
4. Generation at batch 1 with ``tiny`` widened to ``context_length=512`` (tiny's
   128 is shorter than the 8 + 256 tokens generated): 256 new tokens after an
   8-token prompt, greedy (``temperature=0.0``), with the KV cache and without
   (``use_cache=False``, the sequence recomputed at every step). Targets: ours /
   PyTorch eager KV-cached generation of the same weights (preallocated k/v per
   layer, ``torch.inference_mode``) >= 1.1 with identical tokens; and this
   benchmark's own bar, cached >= 4x recompute tokens/s.
   Then the cost of one cached decoding step at cache positions 32, 128 and 512
   (``tiny`` with ``context_length=1024``): a one-token forward against a cache
   that holds that many positions, rewound after every call, median of many
   calls. It should stay roughly flat; the benchmark's own bar (not a spec
   target) is ms(512) / ms(32) <= 1.5.
5. Peak memory of one ``small`` training step (after warmup) with
   ``tracemalloc`` (numpy reports its buffers to it): the peak above what was
   allocated before the step, the activations the forward keeps for backward,
   and, for reference, the bytes of the parameters and optimizer state (which
   exist before the step). Shares are of parameters + optimizer + step peak.
   Target: activations at most 600 MiB.

The BLAS kernel numpy runs is printed (threadpoolctl), with a warning when
``OPENBLAS_CORETYPE`` (or ``OPENBLAS_L2_SIZE``) forces OpenBLAS's choice: README
figures are measured with the kernel a user's machine gets, i.e. with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/bench_model.py``.

Other processes distort timings badly on a 2-core machine (PyTorch's OpenMP
threads and OpenBLAS's threads both spin-wait for each other), so the report
ends with the CPU share other processes used during each section (from
``/proc/stat``) and a warning when it exceeds 5 %; ``--wait-idle`` waits for a
quiet machine first.

Figures marked PASS/FAIL are targets; the exit code is 0 even when a target
fails (this is a report). It is 1 only if a correctness check fails: the torch
reference does not compute the same logits or gradients (then its timings mean
nothing).

Run (from the repository root)::

    python benchmarks/bench_model.py                     # full run, about 2-3 minutes on 2 cores
    python benchmarks/bench_model.py --quick             # smoke run: 2 repeats, no `small`
    python benchmarks/bench_model.py --repeats 9 --json results.json
    python benchmarks/bench_model.py --profile           # only cProfile listings (tiny step, decode)
    python benchmarks/bench_model.py --wait-idle 600     # first wait (up to 10 min) for an idle machine

PyTorch is optional (only the reference rows need it). Install it with::

    pip install torch==2.13.0

Without it the torch rows say "not installed" and everything else still runs.
Do not run other heavy jobs at the same time: the machine has few cores.
"""

from __future__ import annotations

import argparse
import cProfile
import contextlib
import gc
import io
import json
import math
import os
import platform
import pstats
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

try:
    import minitransformer  # noqa: F401
except ImportError:  # not installed: use the repository this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_breakdown

import numpy as np

import bench_breakdown as breakdown  # noqa: E402  (benchmarks/, next to this file)
from bench_mla import interleaved_runs  # noqa: E402
from minitransformer.core import nn as mnn
from minitransformer.attention.kv_cache import KVCache
from minitransformer.core.config import ModelConfig
from minitransformer.core.fileio import atomic_write
from minitransformer.model import GPT, flatten
from minitransformer.training import AdamW

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    torch = None

TORCH_VERSION = "2.13.0"
TORCH_HINT = f"pip install torch=={TORCH_VERSION}"
THREADS = 2  # torch intra-op threads; numpy's OpenBLAS uses one per core (2 here)

BATCH = 16
LR = 3e-4
BETAS = (0.9, 0.95)
WEIGHT_DECAY = 0.1
PROMPT_LEN = 8
NEW_TOKENS = 256
GEN_CONTEXT = 512  # tiny's own 128 is shorter than PROMPT_LEN + NEW_TOKENS
DECODE_CONTEXT = 1024
DECODE_POSITIONS = (32, 128, 512)
BREAKDOWN_CONFIGS = ("tiny", "small")  # where the time of a step goes, stage by stage and by kind

TARGET_PEAK_TINY = 0.45  # training step GFLOP/s / numpy matmul peak (same run), at least
TARGET_PEAK_SMALL = 0.50
TARGET_ACTIVATIONS_MIB = 600  # activations one small step keeps for backward, at most
TARGET_CACHE_SPEEDUP = 4.0  # cached / recompute tokens/s, at least (this benchmark's bar)
TARGET_GEN_VS_TORCH = 1.1  # ours / torch cached tokens/s, at least, with identical tokens
TARGET_DECODE_FLAT = 1.5  # ms per token at 512 / at 32, at most (this benchmark's bar for "roughly flat")
LOGITS_TOL = 1e-4  # max abs diff numpy vs torch logits (correctness)
GRAD_TOL = 1e-3  # max abs diff / max abs value, per gradient tensor (correctness)

FLOPS_FORMULA = ("FLOPs/step = 6*N_mm*B*T + 3*2*2*B*L*T^2*C, N_mm = L*(4*C^2 + 2*C*F) + C*V "
                 "(matmul weights incl. the tied head once; attention over the full T x T square)")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def train_configs(quick: bool) -> dict[str, ModelConfig]:
    names = ("toy", "tiny") if quick else ("toy", "tiny", "small")
    return {n: ModelConfig.preset(n) for n in names}


# ---------------------------------------------------------------------------------- timing
def measure(fn, repeats: int, warmup: int = 1, min_run_s: float = 0.0) -> dict:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed runs.

    A run calls ``fn`` ``inner`` times and counts the mean, with ``inner`` chosen
    (from one extra untimed call) so that a run lasts at least ``min_run_s``:
    millisecond steps are not timer noise. Returns seconds per call.
    """
    for _ in range(warmup):
        fn()
    inner = 1
    if min_run_s > 0:
        t0 = time.perf_counter()
        fn()
        inner = max(1, math.ceil(min_run_s / max(time.perf_counter() - t0, 1e-9)))
    times = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return {"median_s": statistics.median(times), "min_s": min(times), "inner": inner, "runs_s": times}


def percall(fn, calls: int, warmup: int) -> dict:
    """Median of ``calls`` individually timed calls (for sub-millisecond work)."""
    for _ in range(warmup):
        fn()
    gc.collect()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "calls": calls}


def measure_interleaved(fns: dict, repeats: int, warmup: int = 1, min_run_s: float = 0.0, settle: int = 1) -> dict:
    """Time several ``fns[label]()`` round-robin: one timed run of each per round, ``repeats`` rounds.

    On a shared (virtual) machine the speed drifts from minute to minute; timing the things
    that are compared in the same rounds exposes them to the same drift, so their ratios stay
    meaningful. Each run repeats its function ``inner`` times (chosen so that a run lasts at
    least ``min_run_s``) after ``settle`` untimed calls: the first call after switching from
    other work is slow (idle threads wake, the cores' clocks and caches adjust; measured here, a
    tiny step right after a large matmul took 40 % longer), and a training or decoding loop runs
    its calls back to back. The garbage collector is off while timing. Returns, per label,
    what `measure` returns (seconds per call).
    """
    inner = {}
    for label, fn in fns.items():
        for _ in range(warmup):
            fn()
        t0 = time.perf_counter()
        fn()
        inner[label] = max(1, math.ceil(min_run_s / max(time.perf_counter() - t0, 1e-9))) if min_run_s else 1
    times = interleaved_runs(fns, repeats, warmup=0, inner=inner, settle=settle)
    return {label: {"median_s": statistics.median(v), "min_s": min(v), "inner": inner[label], "runs_s": v}
            for label, v in times.items()}


# ---------------------------------------------------------------------------------- machine noise
class CpuNoise:
    """CPU time that *other* processes used while each section ran (Linux ``/proc/stat``).

    On a 2-core machine one busy neighbour halves a measurement, and PyTorch's spinning
    OpenMP threads suffer far more than that; this makes such a run visible instead of
    silently wrong. others = (all CPUs' busy + steal time) - this process's CPU time.
    """

    NOISY = 0.05  # share of the machine used by others above which a section is flagged

    def __init__(self):
        self.sections: dict = {}
        self.available = os.path.exists("/proc/stat")

    @staticmethod
    def _busy_s() -> float:
        with open("/proc/stat", encoding="ascii") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / os.sysconf("SC_CLK_TCK")

    @contextlib.contextmanager
    def section(self, name: str):
        if not self.available:
            yield
            return
        b0, t0, w0 = self._busy_s(), os.times(), time.perf_counter()
        try:
            yield
        finally:
            b1, t1, w1 = self._busy_s(), os.times(), time.perf_counter()
            ours = (t1.user + t1.system) - (t0.user + t0.system)
            others = max(0.0, (b1 - b0) - ours)
            wall = max(w1 - w0, 1e-9)
            self.sections[name] = {"wall_s": wall, "ours_cpu_s": ours, "others_cpu_s": others,
                                   "others_share": others / (wall * (os.cpu_count() or 1))}


NOISE = CpuNoise()


def wait_for_idle(max_wait_s: float, window_s: float = 5.0) -> float:
    """Sleep until other processes use under `CpuNoise.NOISY` of the machine for ``window_s``; return seconds waited."""
    t0 = time.perf_counter()
    while NOISE.available and time.perf_counter() - t0 < max_wait_s:
        with NOISE.section("_idle_probe"):
            time.sleep(window_s)
        share = NOISE.sections.pop("_idle_probe")["others_share"]
        if share <= CpuNoise.NOISY:
            break
        log(f"waiting for an idle machine: other processes use {100 * share:.0f}% of the cpus")
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------- machine
def machine_info() -> dict:
    info = {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "numpy_blas": _numpy_blas(),
        "blas_kernel": blas_kernel(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                       if k in os.environ},
    }
    try:
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        info["torch_mkl"] = bool(torch.backends.mkl.is_available())
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


KERNEL_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")  # set, they force OpenBLAS's kernel choice / tuning


def blas_kernel() -> dict:
    """The BLAS library and the kernel numpy's matmul runs (threadpoolctl), and the variables that force it.

    OpenBLAS picks its kernel for the CPU it finds (``architecture``: SkylakeX, Zen, Haswell, ...);
    ``OPENBLAS_CORETYPE`` overrides that choice, typically with an older, slower kernel, and
    ``OPENBLAS_L2_SIZE`` its blocking. A user's machine runs without them, so README figures
    are measured with both unset: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 ...``.
    """
    info: dict = {"env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["error"] = "threadpoolctl not installed (pip install threadpoolctl)"
        return info
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    if blas:
        b = blas[0]
        info.update(library=b.get("internal_api"), version=b.get("version"), architecture=b.get("architecture"),
                    threads=b.get("num_threads"), threading=b.get("threading_layer"))
    return info


def kernel_line(k: dict) -> str:
    """One report line: the kernel numpy runs, and a warning when the environment forces it."""
    text = (f"BLAS kernel numpy runs: {k.get('library', '?')} {k.get('version', '')} kernel {k.get('architecture', '?')}, "
            f"{k.get('threads', '?')} threads" if "error" not in k else f"BLAS kernel: unknown ({k['error']})")
    if k["env"]:
        forced = ", ".join(f"{n}={v}" for n, v in k["env"].items())
        text += (f"\nWARNING: {forced} is set: OpenBLAS runs a forced kernel/blocking, not the one a user's machine "
                 "gets; measure with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python3 benchmarks/bench_model.py`")
    return text


def _numpy_blas() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy: no mode="dicts"
        return "unknown"


# ---------------------------------------------------------------------------------- 1. matmul peak
def bench_matmul(repeats: int) -> dict:
    out: dict = {"numpy": {}}
    rng = np.random.default_rng(0)
    for n in (1024, 2048, 3072):
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty((n, n), np.float32)
        log(f"[1] numpy float32 matmul {n}x{n} @ {n}x{n} x{max(repeats, 5)}")
        s = measure(lambda: np.matmul(a, b, out=c), max(repeats, 5), warmup=2)
        s["gflops_median"] = 2 * n ** 3 / s["median_s"] / 1e9
        s["gflops_best"] = 2 * n ** 3 / s["min_s"] / 1e9
        out["numpy"][str(n)] = s
    out["peak_gflops"] = max(s["gflops_median"] for s in out["numpy"].values())
    out["peak_size"] = max(out["numpy"], key=lambda k: out["numpy"][k]["gflops_median"])
    if torch is not None:
        n = 2048
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        log(f"[1] torch float32 mm {n}x{n} x{max(repeats, 5)} (information)")
        s = measure(lambda: torch.mm(a, b, out=c), max(repeats, 5), warmup=2)
        s["gflops_median"] = 2 * n ** 3 / s["median_s"] / 1e9
        out["torch_2048"] = s
    return out


# ---------------------------------------------------------------------------------- FLOPs
def matmul_params(cfg: ModelConfig) -> int:
    """Weights that enter a matmul: q, k, v, o and the MLP per layer, and the head once (tied or not)."""
    C, F_, L, V = cfg.d_model, cfg.ff_width, cfg.n_layers, cfg.vocab_size
    H, G, D = cfg.n_heads, cfg.kv_heads, cfg.d_head
    per_layer = C * H * D + 2 * C * G * D + H * D * C + (3 if cfg.ffn == "swiglu" else 2) * C * F_
    return L * per_layer + C * V


def train_flops(cfg: ModelConfig, B: int, T: int) -> dict:
    dense = 6 * matmul_params(cfg) * B * T
    attn = 3 * 2 * 2 * B * cfg.n_layers * T * T * (cfg.n_heads * cfg.d_head)
    return {"n_matmul_params": matmul_params(cfg), "dense": dense, "attention": attn, "total": dense + attn}


# ---------------------------------------------------------------------------------- the torch reference
def torch_gpt_class():
    """The PyTorch module, defined only when torch is importable."""
    tnn = torch.nn

    class Attention(tnn.Module):
        def __init__(self, cfg: ModelConfig, impl: str):
            super().__init__()
            C, H, D = cfg.d_model, cfg.n_heads, cfg.d_head
            self.H, self.D, self.impl = H, D, impl
            self.q, self.k, self.v = tnn.Linear(C, H * D), tnn.Linear(C, H * D), tnn.Linear(C, H * D)
            self.o = tnn.Linear(H * D, C)
            L = cfg.context_length
            self.register_buffer("future", torch.ones(L, L, dtype=torch.bool).triu(1), persistent=False)

        def forward(self, x, kv=None, pos: int = 0):
            B, T, _ = x.shape
            H, D = self.H, self.D
            q = self.q(x).view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            k = self.k(x).view(B, T, H, D).transpose(1, 2)
            v = self.v(x).view(B, T, H, D).transpose(1, 2)
            if kv is not None:  # preallocated (B, H, max_len, D) per layer
                kc, vc = kv
                kc[:, :, pos:pos + T] = k
                vc[:, :, pos:pos + T] = v
                k, v = kc[:, :, :pos + T], vc[:, :, :pos + T]
            S = k.shape[2]
            if self.impl == "sdpa":
                if T == 1:  # one new token sees every cached key
                    z = F.scaled_dot_product_attention(q, k, v)
                elif pos == 0:
                    z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                else:
                    z = F.scaled_dot_product_attention(q, k, v, attn_mask=~self.future[pos:pos + T, :S])
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))  # (B, H, T, S)
                if T > 1:
                    att = att.masked_fill(self.future[pos:pos + T, :S], float("-inf"))
                z = torch.softmax(att, dim=-1) @ v  # (B, H, T, D)
            return self.o(z.transpose(1, 2).reshape(B, T, H * D))

    class MLP(tnn.Module):
        def __init__(self, cfg: ModelConfig):
            super().__init__()
            self.fc = tnn.Linear(cfg.d_model, cfg.ff_width)
            self.proj = tnn.Linear(cfg.ff_width, cfg.d_model)

        def forward(self, x):
            return self.proj(F.gelu(self.fc(x), approximate="tanh"))

    class Block(tnn.Module):
        def __init__(self, cfg: ModelConfig, impl: str):
            super().__init__()
            self.ln1 = tnn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
            self.attn = Attention(cfg, impl)
            self.ln2 = tnn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
            self.mlp = MLP(cfg)

        def forward(self, x, kv=None, pos: int = 0):
            x = x + self.attn(self.ln1(x), kv, pos)
            return x + self.mlp(self.ln2(x))

    class TorchGPT(tnn.Module):
        """GPT-2-style model equal to the numpy GPT with the default variants."""

        def __init__(self, cfg: ModelConfig, impl: str = "sdpa"):
            super().__init__()
            default = dict(positional="learned", norm="layernorm", ffn="gelu", tie_embeddings=True, bias=True,
                           dropout=0.0)
            wrong = {k: getattr(cfg, k) for k, v in default.items() if getattr(cfg, k) != v}
            if wrong or cfg.kv_heads != cfg.n_heads or cfg.d_ff is not None:
                raise ValueError(f"the torch reference implements only the default variants; config has {wrong}")
            self.cfg = cfg
            self.wte = tnn.Embedding(cfg.vocab_size, cfg.d_model)
            self.wpe = tnn.Embedding(cfg.context_length, cfg.d_model)
            self.blocks = tnn.ModuleList([Block(cfg, impl) for _ in range(cfg.n_layers)])
            self.ln_f = tnn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)

        def forward(self, ids, kv=None, pos: int = 0):
            T = ids.shape[1]
            x = self.wte(ids) + self.wpe(torch.arange(pos, pos + T))
            for i, block in enumerate(self.blocks):
                x = block(x, None if kv is None else kv[i], pos)
            return F.linear(self.ln_f(x), self.wte.weight)  # tied head: x @ W_E^T

        def new_kv(self, batch: int, max_len: int):
            shape = (batch, self.cfg.n_heads, max_len, self.cfg.d_head)
            return [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]

    return TorchGPT


def name_map(cfg: ModelConfig) -> list[tuple[str, str, bool]]:
    """(numpy dotted name, torch parameter name, transpose?) for every parameter.

    Numpy linear weights are (in, out) and used as ``x @ W``; torch's are (out, in),
    used as ``x @ W.T``: those are transposed. W_E (V, C) is torch's wte.weight as is.
    """
    rows = [("embed.W_E", "wte.weight", False), ("pos.W_pos", "wpe.weight", False)]
    for i in range(cfg.n_layers):
        b, t = f"blocks.{i}", f"blocks.{i}"
        rows += [(f"{b}.ln1.w", f"{t}.ln1.weight", False), (f"{b}.ln1.b", f"{t}.ln1.bias", False)]
        for ours, theirs in (("Q", "q"), ("K", "k"), ("V", "v"), ("O", "o")):
            rows += [(f"{b}.attn.W_{ours}", f"{t}.attn.{theirs}.weight", True),
                     (f"{b}.attn.b_{ours}", f"{t}.attn.{theirs}.bias", False)]
        rows += [(f"{b}.ln2.w", f"{t}.ln2.weight", False), (f"{b}.ln2.b", f"{t}.ln2.bias", False),
                 (f"{b}.mlp.W_in", f"{t}.mlp.fc.weight", True), (f"{b}.mlp.b_in", f"{t}.mlp.fc.bias", False),
                 (f"{b}.mlp.W_out", f"{t}.mlp.proj.weight", True), (f"{b}.mlp.b_out", f"{t}.mlp.proj.bias", False)]
    rows += [("ln_final.w", "ln_f.weight", False), ("ln_final.b", "ln_f.bias", False)]
    return rows


def torch_from_numpy(params: dict, cfg: ModelConfig, impl: str):
    """A TorchGPT holding a copy of the numpy weights."""
    model = torch_gpt_class()(cfg, impl)
    ours, theirs = flatten(params), dict(model.named_parameters())
    mapped = {n for n, _, _ in name_map(cfg)}
    if set(ours) != mapped or set(theirs) != {t for _, t, _ in name_map(cfg)}:
        raise ValueError(f"name map out of date: numpy-only {sorted(set(ours) - mapped)}, "
                         f"unmapped torch {sorted(set(theirs) - {t for _, t, _ in name_map(cfg)})}")
    with torch.no_grad():
        for n, t, transpose in name_map(cfg):
            a = np.ascontiguousarray(ours[n].T if transpose else ours[n], dtype=np.float32)
            if tuple(theirs[t].shape) != a.shape:
                raise ValueError(f"{n} {ours[n].shape} does not fit {t} {tuple(theirs[t].shape)}")
            theirs[t].copy_(torch.from_numpy(a))
    return model


def torch_adamw(model):
    decay = [p for p in model.parameters() if p.dim() >= 2]  # as our AdamW: matrices only
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}],
                             lr=LR, betas=BETAS)


def batch_for(cfg: ModelConfig, B: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, cfg.vocab_size, size=(B, cfg.context_length + 1))
    return tokens[:, :-1].copy(), tokens[:, 1:].copy()


def check_torch(cfg: ModelConfig, x: np.ndarray, y: np.ndarray) -> dict:
    """Logits and gradients of numpy vs torch on one batch, biases and norms perturbed."""
    model = GPT(cfg, seed=1)
    rng = np.random.default_rng(1)
    for a in flatten(model.params).values():  # every 1-D tensor away from its 0/1 init
        if a.ndim == 1:
            a += rng.normal(0.0, 0.1, a.shape).astype(np.float32)
    out: dict = {}
    logits_np = model.forward(x)
    tm = torch_from_numpy(model.params, cfg, "sdpa")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for impl in ("sdpa", "matmul"):
        for blk in tm.blocks:
            blk.attn.impl = impl
        with torch.no_grad():
            logits_t = tm(xt).numpy()
        out[f"logits_max_abs_diff_{impl}"] = float(np.abs(logits_t - logits_np).max())
    out["logits_max_abs"] = float(np.abs(logits_np).max())
    out["logits_max_abs_diff"] = max(out["logits_max_abs_diff_sdpa"], out["logits_max_abs_diff_matmul"])
    out["logits_ok"] = out["logits_max_abs_diff"] <= LOGITS_TOL
    # gradients
    loss_np = model.loss(x, y)
    grads = flatten(model.backward())
    for blk in tm.blocks:
        blk.attn.impl = "sdpa"
    loss_t = F.cross_entropy(tm(xt).reshape(-1, cfg.vocab_size), yt.reshape(-1))
    loss_t.backward()
    theirs = dict(tm.named_parameters())
    # subtle: b_K's gradient is zero in exact arithmetic (adding a constant to every key
    # shifts a row of scores by q.b_K, which softmax ignores), so both sides hold rounding
    # noise there; the scale is floored at 1e-3 of the largest gradient of any tensor.
    floor = 1e-3 * max(float(np.abs(g).max()) for g in grads.values())
    worst, worst_name = 0.0, None
    for n, t, transpose in name_map(cfg):
        g_t = theirs[t].grad.numpy()
        g_t = g_t.T if transpose else g_t
        rel = float(np.abs(g_t - grads[n]).max() / max(float(np.abs(grads[n]).max()), floor))
        if rel >= worst:
            worst, worst_name = rel, n
    out.update(loss_numpy=float(loss_np), loss_torch=float(loss_t.detach()), grad_max_rel_diff=worst,
               grad_worst_tensor=worst_name, grads_ok=worst <= GRAD_TOL)
    return out


# ---------------------------------------------------------------------------------- 2-3. training
def numpy_train_step(cfg: ModelConfig, x, y, threads=None):
    model = GPT(cfg, seed=0, threads=threads)
    opt = AdamW(model.params, lr=LR, betas=BETAS, weight_decay=WEIGHT_DECAY)

    def step():
        loss = model.loss(x, y)
        g = opt.gather(model.backward())
        opt.step(g)
        return loss

    return model, opt, step


def torch_train_step(cfg: ModelConfig, x, y, impl: str):
    model = torch_from_numpy(GPT(cfg, seed=0).params, cfg, impl)  # the same initial weights as ours
    opt = torch_adamw(model)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt).reshape(-1, cfg.vocab_size), yt.reshape(-1))
        loss.backward()
        opt.step()
        return loss

    return step


def bench_training(configs: dict, repeats: int, peak: float, peak_n: int) -> dict:
    out: dict = {}
    for name, cfg in configs.items():
        B, T = BATCH, cfg.context_length
        x, y = batch_for(cfg, B)
        flops = train_flops(cfg, B, T)
        r: dict = {"batch": B, "context": T, "params": GPT(cfg, seed=0).num_params, "flops": flops}
        with NOISE.section(f"train {name}"):
            out[name] = _bench_one_config(name, cfg, r, x, y, flops, repeats, peak, peak_n)
    return out


def _bench_one_config(name, cfg, r, x, y, flops, repeats, peak, peak_n) -> dict:
    """The torch check, then ours, ours on one thread, the peak matmul and torch's steps, timed round-robin."""
    B, T = BATCH, cfg.context_length
    fns = {"numpy": numpy_train_step(cfg, x, y)[2], "numpy_one_thread": numpy_train_step(cfg, x, y, threads=1)[2]}
    a = np.random.default_rng(0).standard_normal((peak_n, peak_n), dtype=np.float32)
    c = np.empty_like(a)
    fns["peak"] = lambda: np.matmul(a, a, out=c)
    log(f"[2] training step, {name} (B={B}, T={T}): {', '.join(fns)}, round-robin x{repeats}")
    m = measure_interleaved(fns, repeats, warmup=2, min_run_s=0.1)
    if torch is not None:  # timed apart from ours: PyTorch's OpenMP threads spin after each step
        log(f"[3] torch check (logits, gradients), {name}")
        r["check"] = check_torch(cfg, x, y)
        tfns = {f"torch_{impl}": torch_train_step(cfg, x, y, impl) for impl in ("sdpa", "matmul")}
        tfns["peak"] = fns["peak"]
        log(f"[3] torch eager training step, {name}: {', '.join(tfns)}, round-robin x{repeats}")
        tm = measure_interleaved(tfns, repeats, warmup=2, min_run_s=0.1)
        r["peak_torch_rounds_gflops"] = 2 * peak_n ** 3 / tm["peak"]["median_s"] / 1e9
    # the peak, measured in the same rounds as the steps (section 1's peak is the same product, measured earlier)
    r["peak_same_rounds_gflops"] = local = 2 * peak_n ** 3 / m["peak"]["median_s"] / 1e9
    for label in ("numpy", "numpy_one_thread"):
        s = m[label]
        s.update(tokens_per_s=B * T / s["median_s"], gflops=flops["total"] / s["median_s"] / 1e9)
        s["frac_peak"] = s["gflops"] / local
        r[label] = s
    if name in BREAKDOWN_CONFIGS:
        log(f"[2] where the time goes, {name}: the cores, one shard stage by stage, then by kind of work")
        cores_ms = breakdown.core_breakdown(cfg, x, y, repeats)
        stages = breakdown.stage_breakdown(cfg, x, y, repeats)
        r["breakdown"] = {"cores_ms": cores_ms, "stages_ms": stages,
                          "kinds_ms": breakdown.kind_breakdown(cfg, cores_ms["shard_rows"], cores_ms["shard_alone_ms"],
                                                               repeats),
                          "in_place_ms": breakdown.in_place_breakdown(cfg, x, y, repeats)}
    if torch is None:
        r["torch"] = None
        return r
    r["torch"] = {}
    for impl in ("sdpa", "matmul"):
        ts = tm[f"torch_{impl}"]
        ts.update(tokens_per_s=B * T / ts["median_s"], gflops=flops["total"] / ts["median_s"] / 1e9)
        ts["frac_peak"] = ts["gflops"] / r["peak_torch_rounds_gflops"]
        r["torch"][impl] = ts
    best = min(r["torch"], key=lambda k: r["torch"][k]["median_s"])
    r["torch_impl"] = best
    r["ratio_numpy_over_torch"] = r["numpy"]["median_s"] / r["torch"][best]["median_s"]
    return r


# ---------------------------------------------------------------------------------- 4. generation
def _rewind(kv: KVCache, length: int) -> None:
    """Make the cache hold ``length`` positions again (the arrays beyond are just overwritten)."""
    if isinstance(getattr(kv, "lengths", None), list):
        kv.lengths = [length] * len(kv.lengths)
    else:
        kv.length = length


def bench_generation(repeats: int, quick: bool) -> dict:
    out: dict = {}
    cfg = ModelConfig.preset("tiny", context_length=GEN_CONTEXT)
    out["config"] = f"tiny with context_length={GEN_CONTEXT}"
    model = GPT(cfg, seed=0)
    prompt = np.random.default_rng(2).integers(0, cfg.vocab_size, size=(1, PROMPT_LEN))
    n = NEW_TOKENS
    gen_repeats = max(2, repeats - 2) if not quick else 2
    results = {}
    log(f"[4] generate {n} tokens, batch 1, greedy, use_cache=False x{gen_repeats}")
    model.generate(prompt, 16, temperature=0.0, use_cache=False)  # warmup, short
    s = measure(lambda: results.__setitem__(False, model.generate(prompt, n, temperature=0.0, use_cache=False)),
                gen_repeats, warmup=0)
    s["tokens_per_s"] = n / s["median_s"]
    out["recompute"] = s
    fns = {"cached": lambda: results.__setitem__(True, model.generate(prompt, n, temperature=0.0))}
    if torch is not None:
        tm = {impl: torch_from_numpy(model.params, cfg, impl) for impl in ("sdpa", "matmul")}
        prompt_t = torch.from_numpy(prompt)

        def torch_generate(m):
            with torch.inference_mode():
                kv = m.new_kv(1, cfg.context_length)
                logits = m(prompt_t, kv, 0)  # prefill
                pos, toks = PROMPT_LEN, [prompt_t]
                for step in range(n):
                    nxt = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1), greedy
                    toks.append(nxt)
                    if step == n - 1:
                        break
                    logits = m(nxt, kv, pos)
                    pos += 1
                return torch.cat(toks, dim=1).numpy()

        for impl, m in tm.items():
            fns[f"torch_{impl}"] = lambda m=m: torch_generate(m)
    rounds = 2 * repeats + 1
    log(f"[4] generate {n} tokens with a KV cache: {', '.join(fns)}, round-robin x{rounds}")
    m = measure_interleaved(fns, rounds, warmup=1)
    out["cached"] = dict(m["cached"], tokens_per_s=n / m["cached"]["median_s"])
    out["cache_speedup"] = out["cached"]["tokens_per_s"] / out["recompute"]["tokens_per_s"]
    out["cached_equals_recompute"] = bool(np.array_equal(results[True], results[False]))
    if torch is None:
        out["torch"] = None
        return out
    out["torch"] = {impl: dict(m[f"torch_{impl}"], tokens_per_s=n / m[f"torch_{impl}"]["median_s"]) for impl in tm}
    best = max(out["torch"], key=lambda k: out["torch"][k]["tokens_per_s"])
    out["torch_impl"] = best
    out["ours_over_torch"] = out["cached"]["tokens_per_s"] / out["torch"][best]["tokens_per_s"]
    theirs = torch_generate(tm[best])
    same = np.array_equal(theirs, results[True])
    out["torch_tokens_identical"] = bool(same)
    if not same:
        out["torch_first_difference"] = int(np.argmax(theirs[0] != results[True][0]))
    return out


def bench_decode_positions(repeats: int) -> dict:
    cfg = ModelConfig.preset("tiny", context_length=DECODE_CONTEXT)
    model = GPT(cfg, seed=0)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, cfg.vocab_size, size=(1, max(DECODE_POSITIONS)))
    tok = ids[:, :1]
    calls = 60 * repeats
    out: dict = {"config": f"tiny with context_length={DECODE_CONTEXT}", "positions": {}}
    tm = torch_from_numpy(model.params, cfg, "sdpa") if torch is not None else None
    for P in DECODE_POSITIONS:
        kv = KVCache.for_config(cfg, batch_size=1)
        with mnn.no_grad():
            model.forward(ids[:, :P], kv_cache=kv)  # cache holds positions 0..P-1

            def one(kv=kv, P=P):
                _rewind(kv, P)
                model.forward(tok, kv_cache=kv)  # the token at position P

            log(f"[4] cached decode step at position {P}: {calls} calls")
            s = percall(one, calls, warmup=20)
        r = {"ours": s}
        if tm is not None:
            with torch.inference_mode():
                tkv = tm.new_kv(1, cfg.context_length)
                tm(torch.from_numpy(ids[:, :P]), tkv, 0)
                tt = torch.from_numpy(tok)
                r["torch"] = percall(lambda: tm(tt, tkv, P), calls, warmup=20)
        out["positions"][str(P)] = r
    first, last = (out["positions"][str(p)]["ours"]["median_s"] for p in (DECODE_POSITIONS[0], DECODE_POSITIONS[-1]))
    out["ratio_last_over_first"] = last / first
    return out


# ---------------------------------------------------------------------------------- 5. memory
def bench_memory(name: str, cfg: ModelConfig) -> dict:
    log(f"[5] tracemalloc peak of one training step, {name}")
    x, y = batch_for(cfg, BATCH)
    model, opt, step = numpy_train_step(cfg, x, y)
    step()  # warmup, untraced
    tracemalloc.start()
    try:
        step()  # warmup, traced (anything allocated lazily and kept shows up in the baseline)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        model.loss(x, y)
        after_forward = tracemalloc.get_traced_memory()[0]
        g = opt.gather(model.backward())
        opt.step(g)
        del g
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    params = int(opt.buffer.nbytes)
    # optimizer state: every full-size array the optimizer owns besides the parameters (moments, scratch)
    opt_state = sum(int(v.nbytes) for k, v in vars(opt).items()
                    if isinstance(v, np.ndarray) and v.size == opt.buffer.size and v is not opt.buffer)
    step_peak = peak - base
    activations = after_forward - base
    total = params + opt_state + step_peak
    return {"config": name, "batch": BATCH, "context": cfg.context_length, "params_bytes": params,
            "optimizer_bytes": opt_state, "step_peak_bytes": step_peak, "activations_bytes": activations,
            "total_peak_bytes": total, "activation_share": activations / total, "step_share": step_peak / total}


# ---------------------------------------------------------------------------------- profiles
def run_profiles(top: int = 15) -> str:
    """cProfile listings (sorted by tottime) of the tiny training step and of a cached decode step."""
    lines = []
    cfg = ModelConfig.preset("tiny")
    x, y = batch_for(cfg, BATCH)
    _, _, step = numpy_train_step(cfg, x, y)
    for _ in range(2):
        step()
    n_steps = 10
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n_steps):
        step()
    prof.disable()
    lines.append(_pstats(prof, f"tiny training step (B={BATCH}, T={cfg.context_length}), {n_steps} steps", top))

    cfg = ModelConfig.preset("tiny", context_length=GEN_CONTEXT)
    model = GPT(cfg, seed=0)
    ids = np.random.default_rng(3).integers(0, cfg.vocab_size, size=(1, 129))
    kv = KVCache.for_config(cfg, batch_size=1)
    n_calls = 2000
    with mnn.no_grad():
        model.forward(ids[:, :128], kv_cache=kv)
        for _ in range(20):
            _rewind(kv, 128)
            model.forward(ids[:, 128:], kv_cache=kv)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n_calls):
            _rewind(kv, 128)
            model.forward(ids[:, 128:], kv_cache=kv)
        prof.disable()
    lines.append(_pstats(prof, f"cached single-token decode at position 128 (tiny, context {GEN_CONTEXT}), "
                               f"{n_calls} calls", top))
    return "\n".join(lines)


def _pstats(prof, title: str, top: int) -> str:
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    text = buf.getvalue()
    body = text[text.find("   ncalls"):] if "   ncalls" in text else text
    total = next((ln.strip() for ln in text.splitlines() if "function calls" in ln), "")
    return f"== profile: {title}\n   {total}\n{body.rstrip()}\n"


# ---------------------------------------------------------------------------------- report
def verdict(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def _table(header, rows) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    line = "-" * len(fmt(header))
    return [line, fmt(header), line, *[fmt(r) for r in rows], line]


def _ms(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.3f} s"


def _mb(b: float) -> str:
    return f"{b / 2 ** 20:.1f} MiB"


def targets(report: dict) -> dict:
    """The figures with a target: value, how it is shown, the target, pass (None: not measured)."""
    t: dict = {}
    tr, ge, de, me = report["training"], report["generation"], report["decode"], report["memory"]
    for name, bar in (("tiny", TARGET_PEAK_TINY), ("small", TARGET_PEAK_SMALL)):
        v = tr[name]["numpy"]["frac_peak"] if name in tr else None
        t[f"train_{name}_frac_peak"] = {"value": v, "shown": None if v is None else f"{100 * v:.1f}%",
                                        "target": f">= {100 * bar:.0f}%", "pass": None if v is None else v >= bar}
    t["gen_cached_over_recompute"] = {"value": ge["cache_speedup"], "shown": f"{ge['cache_speedup']:.2f}x",
                                      "target": f">= {TARGET_CACHE_SPEEDUP}",
                                      "pass": ge["cache_speedup"] >= TARGET_CACHE_SPEEDUP}
    v = ge.get("ours_over_torch")
    same = ge.get("torch_tokens_identical")
    t["gen_ours_over_torch"] = {"value": v, "shown": None if v is None else f"{v:.2f}x" + ("" if same else " (tokens differ)"),
                                "target": f">= {TARGET_GEN_VS_TORCH}, same tokens",
                                "pass": None if v is None else (v >= TARGET_GEN_VS_TORCH and bool(same))}
    t["decode_flat_512_over_32"] = {"value": de["ratio_last_over_first"], "shown": f"{de['ratio_last_over_first']:.2f}x",
                                    "target": f"<= {TARGET_DECODE_FLAT}",
                                    "pass": de["ratio_last_over_first"] <= TARGET_DECODE_FLAT}
    act = me["activations_bytes"] / 2 ** 20 if me["config"] == "small" else None  # (--quick measures tiny)
    t["small_activations_mib"] = {"value": act, "shown": None if act is None else f"{act:.0f} MiB",
                                  "target": f"<= {TARGET_ACTIVATIONS_MIB} MiB",
                                  "pass": None if act is None else act <= TARGET_ACTIVATIONS_MIB}
    return t


def render(report: dict) -> str:
    m, mm, tr, ge, de, me = (report[k] for k in ("machine", "matmul", "training", "generation", "decode", "memory"))
    peak = mm["peak_gflops"]
    L = ["minitransformer model benchmark (float32)",
         f"python {m['python']}, numpy {m['numpy']} (BLAS {m['numpy_blas']}), "
         f"torch {m['torch'] or f'not installed ({TORCH_HINT})'}"
         + (f" ({m['torch_threads']} threads, MKL {'yes' if m.get('torch_mkl') else 'no'})" if m["torch"] else ""),
         f"platform {m['platform']}, cpu {m['cpu']}, cpu count {m['cpu_count']}, "
         f"load average at start {m.get('load_average_at_start', '?')}"
         + (f", env {m['thread_env']}" if m["thread_env"] else ""),
         kernel_line(m["blas_kernel"]),
         f"repeats {report['settings']['repeats']}{' (--quick)' if report['settings']['quick'] else ''}; "
         "median (and min) of timed runs, warmup excluded; targets judged on medians", ""]

    L.append("1. float32 matmul peak (square, out= preallocated)")
    rows = [(f"numpy {n}x{n} @ {n}x{n}", f"{s['gflops_median']:.1f}", f"{s['gflops_best']:.1f}", _ms(s["median_s"]))
            for n, s in mm["numpy"].items()]
    if "torch_2048" in mm:
        s = mm["torch_2048"]
        rows.append(("torch.mm 2048 (information)", f"{s['gflops_median']:.1f}", "", _ms(s["median_s"])))
    rows.append(("numpy peak = best median", f"{peak:.1f}", "", f"(n={mm['peak_size']})"))
    L += _table(("product", "GFLOP/s", "best", "time"), rows) + [""]

    L.append(f"2-3. training step: forward + backward + AdamW, batch {BATCH}, full context; ours vs PyTorch eager")
    L.append(f"   {FLOPS_FORMULA}")
    rows = []
    for name, r in tr.items():
        n, f = r["numpy"], r["flops"]
        tq = r.get("torch")
        t_best = tq[r["torch_impl"]] if tq else None
        one = r["numpy_one_thread"]
        rows.append((f"{name} (T={r['context']}, {r['params'] / 1e6:.2f}M params)", _ms(n["median_s"]),
                     f"{n['tokens_per_s']:,.0f}", f"{f['total'] / 1e9:.2f}", f"{n['gflops']:.1f}",
                     f"{100 * n['frac_peak']:.0f}%", f"{_ms(one['median_s'])} / {100 * one['frac_peak']:.0f}%",
                     _ms(t_best["median_s"]) + f" ({r['torch_impl']})" if tq else "not installed",
                     f"{t_best['gflops']:.1f} / {100 * t_best['frac_peak']:.0f}%" if tq else "",
                     f"{r['ratio_numpy_over_torch']:.2f}x" if tq else "n/a"))
    L += _table(("config", "ours step", "tokens/s", "GFLOP/step", "GFLOP/s", "of peak", "threads=1, of peak",
                 "torch step (attn)", "torch GFLOP/s, peak", "ours/torch"), rows)
    L.append("   ours: the batch in one shard per core, one thread each (GPT's default); threads=1: the plain loop, "
             "elementwise work on one core")
    L.append(f"   timed round-robin with the matmul peak's product (n={mm['peak_size']}), whose GFLOP/s in the same rounds "
             "is the peak the 'of peak' columns use: "
             + ", ".join(f"{name} {r['peak_same_rounds_gflops']:.0f}" for name, r in tr.items()))
    for name, r in tr.items():
        if r.get("torch"):
            c, tq = r["check"], r["torch"]
            other = "matmul" if r["torch_impl"] == "sdpa" else "sdpa"
            L.append(f"   {name}: logits max|diff| {c['logits_max_abs_diff']:.2e} (|logits| <= {c['logits_max_abs']:.2f}; "
                     f"sdpa {c['logits_max_abs_diff_sdpa']:.1e}, matmul {c['logits_max_abs_diff_matmul']:.1e}) "
                     f"{'OK' if c['logits_ok'] else 'ERROR'}; grads max rel diff {c['grad_max_rel_diff']:.1e} "
                     f"({c['grad_worst_tensor']}) {'OK' if c['grads_ok'] else 'ERROR'}; loss {c['loss_numpy']:.5f} vs "
                     f"{c['loss_torch']:.5f}; torch {other} attention {_ms(tq[other]['median_s'])}")
    if "small" not in tr:
        L.append("   small: skipped (--quick)")
    if any("breakdown" in r for r in tr.values()):
        L.append("   where the time goes: the step's parallel part and serial tail; one shard alone, each stage timed inside")
        L.append("   a walk composed as model.forward/backward compose it, and each kind of work timed alone at the shard's")
        L.append("   shapes on one thread (the rest = the shard's time - their sum), and the same kinds timed in place,")
        L.append("   inside the shard's own loss and backward (the rest: copies, residual adds and Python between them):")
        for name, r in tr.items():
            if "breakdown" in r:
                b = r["breakdown"]
                L += breakdown.render(name, b["cores_ms"], b["stages_ms"], b["kinds_ms"], 1e3 * r["numpy"]["median_s"],
                                      peak, b.get("in_place_ms"))
    L.append("")

    L.append(f"4. generation, batch 1, {PROMPT_LEN}-token prompt + {NEW_TOKENS} new tokens, greedy, {ge['config']}")
    rows = [("ours, KV cache", f"{ge['cached']['tokens_per_s']:,.0f}", _ms(ge["cached"]["median_s"])),
            ("ours, recompute (use_cache=False)", f"{ge['recompute']['tokens_per_s']:,.0f}",
             _ms(ge["recompute"]["median_s"]))]
    if ge.get("torch"):
        for impl, s in ge["torch"].items():
            rows.append((f"torch eager, KV cache, attention {impl}" + (" (reference)" if impl == ge["torch_impl"] else ""),
                         f"{s['tokens_per_s']:,.0f}", _ms(s["median_s"])))
    else:
        rows.append((f"torch: not installed ({TORCH_HINT})", "", ""))
    L += _table(("generator", "tokens/s", "time (256 tokens)"), rows)
    L.append(f"   cached and recompute give identical tokens: {'yes' if ge['cached_equals_recompute'] else 'NO'}"
             + (f"; torch's tokens identical to ours: {'yes' if ge['torch_tokens_identical'] else 'no (first difference at index %d; near-tie argmax?)' % ge['torch_first_difference']}"
                if ge.get("torch") else ""))
    L.append(f"   per-token cost of a cached decoding step ({de['config']}; cache rewound after each call):")
    rows = []
    for P, r in de["positions"].items():
        rows.append((f"position {P}", f"{r['ours']['median_s'] * 1e3:.3f}", f"{r['ours']['min_s'] * 1e3:.3f}",
                     f"{r['torch']['median_s'] * 1e3:.3f}" if "torch" in r else "n/a", str(r["ours"]["calls"])))
    L += _table(("cache holds", "ours ms/token", "ours min", "torch ms/token", "calls"), rows) + [""]

    L.append(f"5. memory of one training step, {me['config']} (batch {me['batch']}, T={me['context']}), tracemalloc")
    rows = [("parameters (flat buffer)", _mb(me["params_bytes"]), ""),
            ("optimizer state (moments + scratch, full-size arrays)", _mb(me["optimizer_bytes"]), ""),
            ("step peak above the pre-step baseline", _mb(me["step_peak_bytes"]), f"{100 * me['step_share']:.0f}%"),
            ("  of which activations kept by the forward", _mb(me["activations_bytes"]),
             f"{100 * me['activation_share']:.0f}%"),
            ("total = parameters + optimizer + step peak", _mb(me["total_peak_bytes"]), "100%")]
    L += _table(("memory", "bytes", "share"), rows) + [""]

    L.append("Targets")
    t = report["targets"]
    labels = {
        "train_tiny_frac_peak": "training step tiny, share of the numpy matmul peak",
        "train_small_frac_peak": "training step small, share of the numpy matmul peak",
        "gen_cached_over_recompute": "generation tokens/s KV cache / recompute (tiny@512)",
        "gen_ours_over_torch": "generation tokens/s ours / torch eager, KV cache",
        "decode_flat_512_over_32": "decode ms/token at 512 / at 32 (this benchmark's bar)",
        "small_activations_mib": "activations kept by one small step",
    }
    rows = [(labels[k], "n/a" if v["value"] is None else v["shown"], v["target"], verdict(v["pass"]))
            for k, v in t.items()]
    L += _table(("figure", "value", "target", "result"), rows)
    failed = [k for k, v in t.items() if v["pass"] is False]
    passed = [k for k, v in t.items() if v["pass"] is True]
    skipped = [k for k, v in t.items() if v["pass"] is None]
    summary = f"targets: {len(passed)} PASS, {len(failed)} FAIL" + (f", {len(skipped)} not measured" if skipped else "")
    if failed:
        summary += "  <-- FAILED: " + ", ".join(failed)
    L.append(summary)
    bad = [n for n, r in tr.items() if r.get("check") and not (r["check"]["logits_ok"] and r["check"]["grads_ok"])]
    if bad:
        L.append(f"ERROR: the torch reference does not match the numpy model on {', '.join(bad)}; its timings mean nothing")
    nz = report["noise"]
    if nz["available"]:
        shares = ", ".join(f"{k} {100 * v['others_share']:.0f}%" for k, v in nz["sections"].items())
        L.append(f"CPU used by other processes during each section (share of all {m['cpu_count']} cpus): {shares}")
        noisy = [k for k, v in nz["sections"].items() if v["others_share"] > nz["flag_above_share"]]
        if noisy:
            L.append(f"WARNING: the machine was busy with other work during {', '.join(noisy)}: those timings are "
                     "unreliable (PyTorch's threads suffer most); rerun on an idle machine")
    L.append(f"total runtime {report['total_runtime_s']:.1f} s")
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 5; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, skip `small` (memory on tiny)")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH (atomic write)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to SECONDS for other processes to leave the cpus idle (default 0: don't)")
    p.add_argument("--profile", action="store_true",
                   help="only print cProfile listings (tottime) of a tiny training step and a cached decode step")
    args = p.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 5)
    if repeats < 1:
        p.error("--repeats must be at least 1")
    if args.json:
        parent = Path(args.json).resolve().parent
        if not parent.is_dir():  # fail now, not after minutes of benchmarking
            p.error(f"--json: directory {parent} does not exist")
    if torch is not None:
        torch.set_num_threads(THREADS)
    else:
        log(f"torch not installed: reference rows are skipped ({TORCH_HINT})")
    if args.wait_idle > 0:
        waited = wait_for_idle(args.wait_idle)
        log(f"waited {waited:.0f} s for an idle machine")
    if args.profile:
        print(run_profiles())
        return 0

    start = time.perf_counter()
    report: dict = {"machine": machine_info(),
                    "settings": {"repeats": repeats, "quick": args.quick, "batch": BATCH, "lr": LR, "betas": BETAS,
                                 "weight_decay": WEIGHT_DECAY, "torch_threads": THREADS, "timer": "time.perf_counter",
                                 "flops_formula": FLOPS_FORMULA}}
    with NOISE.section("matmul"):
        report["matmul"] = bench_matmul(repeats)
    configs = train_configs(args.quick)
    report["training"] = bench_training(configs, repeats, report["matmul"]["peak_gflops"],
                                        int(report["matmul"]["peak_size"]))
    with NOISE.section("generation"):
        report["generation"] = bench_generation(repeats, args.quick)
    with NOISE.section("decode"):
        report["decode"] = bench_decode_positions(repeats)
    mem_name = "tiny" if args.quick else "small"
    with NOISE.section("memory"):
        report["memory"] = bench_memory(mem_name, ModelConfig.preset(mem_name))
    report["noise"] = {"available": NOISE.available, "sections": NOISE.sections, "flag_above_share": NOISE.NOISY}
    report["targets"] = targets(report)
    report["total_runtime_s"] = time.perf_counter() - start

    print(render(report))
    if args.json:
        atomic_write(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    bad = any(r.get("check") and not (r["check"]["logits_ok"] and r["check"]["grads_ok"])
              for r in report["training"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
