"""Data-parallel training: N processes, one replica of the model each, gradients summed by torch.distributed.

    torchrun --standalone --nproc-per-node 2 -m minitransformer train --preset toy --corpus tiny

torchrun starts N copies of the program and tells each its ``RANK`` and
``WORLD_SIZE`` (environment variables); `init_from_env` joins them into one
process group on the gloo backend (CPU, TCP). One step, for a global batch of B rows:

1. every rank draws the *same* global batch (the same seeded generator) and keeps
   its own B/N rows: rank r takes rows r·B/N ... (r+1)·B/N - 1;
2. forward and backward on those rows. The loss is the mean over the global batch,
   the mean of the N shard means, so each rank scales its gradient by 1/N and the
   *sum* over ranks is the gradient one process would compute on all B rows;
3. backward hands over each part's gradients as soon as they are final (output
   head first, embedding last: `model.backward(on_grads=...)`); they are copied into
   a flat communication buffer laid out in that order, and each time a bucket of it
   (``bucket_mb``) is complete an all-reduce (sum) of that bucket starts in gloo's
   background threads while backward goes on with the layers below;
4. wait for the buckets, copy the sum into the optimizer's own layout (decayed
   matrices first, see `AdamW`), clip, step. Every rank makes the same update,
   so the replicas stay equal without ever sending a parameter.

ZeRO-1 (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
Parameter Models", 2020) shards the optimizer state: rank r keeps Adam's moments
only for its 1/N slice of the flat parameter buffer. The gradient is
reduce-scattered (each rank receives the sum of its slice only), each rank updates
its slice, and the parameters are all-gathered: a ring all-reduce in two halves,
the same bytes in principle (gloo's reduce-scatter sends a whole all-reduce's
bytes, so here 1.5 times), and Adam's two moments take 2/N of the memory.

torch is used for communication only: the numpy buffers are handed to it without
a copy (``torch.from_numpy`` shares the memory). Initial parameters are broadcast
from rank 0; only rank 0 writes checkpoints and logs, and a checkpoint is the same
file a single process writes, so it resumes with any number of ranks.

Faults: every collective has the process group's timeout. If a peer dies, the
collective fails (gloo sees the closed connection at once, a hung peer at the
timeout) and `PeerLostError` says which rank, where, and how to resume. The last
checkpoint is intact, because checkpoints are written atomically. A stop flag travels
with each step's loss, so on Ctrl-C all ranks stop after the same step (`stop_agreed`).

Left out: overlapping ZeRO-1's reduce-scatter with backward, tensor and pipeline
parallelism, and elastic restarts (torchrun's ``--max-restarts`` can add those).
"""

from __future__ import annotations

import datetime
import math
import os
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import numpy as np

from ..core import cores
from ..core.tree import flatten
from ..feedforward import moe
from .checkpoint import save_checkpoint
from .loop import Trainer, get_batch
from .optimizer import AdamW, ShardedAdamW, clip_to_norm, lr_at


class PeerLostError(RuntimeError):
    """A collective failed: another rank died, hung past the timeout, or left the group."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the group: its rank, the number of ranks, the collective timeout (s)."""

    rank: int
    world_size: int
    timeout: float = 60.0


def _dist():
    try:
        import torch.distributed as dist
    except ImportError:
        raise ValueError("data-parallel training needs PyTorch for communication: pip install torch "
                         "(the CPU build is enough)") from None
    return dist


def _tensor(array: np.ndarray):
    import torch

    return torch.from_numpy(array)  # the same memory, seen by torch: no copy


def init_from_env(timeout: float = 60.0) -> Optional[DistContext]:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT``).

    Returns None when there is one process (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``): then
    the ordinary `Trainer` is the whole story.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if timeout <= 0:
        raise ValueError(f"timeout={timeout} must be > 0 seconds")
    dist = _dist()
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    return DistContext(dist.get_rank(), dist.get_world_size(), timeout)


def shutdown() -> None:
    """Leave the process group (at the end of a run)."""
    dist = _dist()
    if dist.is_initialized():
        dist.destroy_process_group()


def backward_order(model) -> list[str]:
    """Parameter names in the order `model.backward` makes their gradients final (output head first)."""
    flat = flatten(model.params)
    L = model.config.n_layers
    prefixes = ["unembed", "ln_final", *[f"blocks.{i}" for i in reversed(range(L))], "pos", "embed"]
    order = [n for p in prefixes for n in flat if n == p or n.startswith(p + ".")]
    if sorted(order) != sorted(flat):
        raise ValueError(f"parameters outside the known parts: {sorted(set(flat) - set(order))[:5]}")
    return order


class GradBuckets:
    """The gradient in backward's order, one flat buffer cut into buckets that are all-reduced as they fill.

    Args:
        opt: the optimizer (its names, shapes and dtype).
        order: parameter names in the order backward produces them (`backward_order`).
        bucket_bytes: a bucket closes before it would pass this size (a larger parameter is a bucket alone).
    """

    def __init__(self, opt: AdamW, order: list[str], bucket_bytes: int, scale: float):
        self.opt, self.scale = opt, scale
        self.flat = np.zeros(opt.buffer.size, opt.buffer.dtype)
        self.slices, start = {}, 0
        for n in order:
            size = math.prod(opt.shapes[n])
            self.slices[n] = slice(start, start + size)
            start += size
        self.buckets, lo, item = [], 0, self.flat.itemsize
        for n in order:
            sl = self.slices[n]
            if sl.start > lo and (sl.stop - lo) * item > bucket_bytes:
                self.buckets.append(slice(lo, sl.start))
                lo = sl.start
        self.buckets.append(slice(lo, self.flat.size))
        self.order = order
        self.works, self.launched, self.accumulate, self.launch, self.filled, self.count = [], 0, False, True, 0, 0
        self.bytes_sent = 0

    def start(self, accumulate: bool, launch: bool) -> None:
        """Before a backward: add to the buffer (``accumulate``) or overwrite it; ``launch`` buckets as they fill."""
        self.accumulate, self.launch, self.filled, self.count = accumulate, launch, 0, 0
        self.works, self.launched, self.bytes_sent = [], 0, 0

    def add(self, prefix: str, grads: dict) -> None:
        """`model.backward`'s ``on_grads``: copy one part's gradients in, scaled; start every full bucket."""
        for name, g in flatten(grads, prefix + ".").items():
            view = self.flat[self.slices[name]]
            if self.accumulate:
                view += g.reshape(-1) * self.scale
            else:
                np.multiply(g.reshape(-1), self.scale, out=view)
            self.filled = max(self.filled, self.slices[name].stop)
            self.count += 1
        if self.launch:
            self.launch_ready(self.filled)

    def launch_ready(self, filled: int) -> None:
        """Start the all-reduce of every bucket that lies below ``filled``."""
        dist = _dist()
        while self.launched < len(self.buckets) and self.buckets[self.launched].stop <= filled:
            b = self.buckets[self.launched]
            self.works.append(dist.all_reduce(_tensor(self.flat[b]), op=dist.ReduceOp.SUM, async_op=True))
            self.bytes_sent += (b.stop - b.start) * self.flat.itemsize
            self.launched += 1

    def finish(self, out: np.ndarray) -> None:
        """Start what is left, wait for all buckets, and write the summed gradient in the optimizer's order."""
        if self.count != len(self.order):
            raise ValueError(f"backward gave {self.count} of {len(self.order)} gradients: does every stage have a backward?")
        self.launch_ready(self.flat.size)
        for w in self.works:
            w.wait()
        for n in self.order:
            o = self.opt.offsets[n]
            out[o:o + self.slices[n].stop - self.slices[n].start] = self.flat[self.slices[n]]


class DistributedTrainer(Trainer):
    """A `Trainer` that is one of N data-parallel ranks (see the module docstring).

    Args:
        ctx: this rank's place in the group (`init_from_env`).
        bucket_mb: size of the all-reduce buckets in MB (PyTorch's DDP uses 25).
        zero1: shard the optimizer state (ZeRO-1) instead of replicating it.
        overlap: start each bucket's all-reduce during backward (False: all after backward,
            which shows the full cost of communication in ``comm_seconds``).
    """

    # Ctrl-C only: torchrun sends SIGTERM to the ranks when one of them has failed, and a rank that
    # then finished its step would wait in an all-reduce for a peer that is gone
    stop_signals = ("SIGINT",)

    def stop_agreed(self, ctrl_c) -> bool:
        """Stop after the step in which any rank had a signal, on every rank alike. Each rank sees
        Ctrl-C at its own moment; one that stopped alone would leave its peers waiting
        in the next all-reduce (with ZeRO-1 the save is a collective too). So each rank sends its flag
        with the step's loss (`train_step`) and stops when the summed flags say one of them had a signal.
        """
        if ctrl_c is not self._stop_request:  # a new `run`: no agreement to stop yet
            self._stop_request, self._stop_all = ctrl_c, False
        return self._stop_all

    def __init__(self, model, train_tokens, val_tokens=None, config=None, log=print, *, ctx: DistContext,
                 bucket_mb: float = 25.0, zero1: bool = False, overlap: bool = True):
        super().__init__(model, train_tokens, val_tokens, config, log=log if ctx.rank == 0 else None)
        N, c = ctx.world_size, self.config
        if c.batch_size % N:
            raise ValueError(f"batch_size={c.batch_size} does not split over {N} ranks; use a multiple of {N}")
        if bucket_mb <= 0:
            raise ValueError(f"bucket_mb={bucket_mb} must be > 0")
        self.ctx, self.zero1, self.overlap = ctx, zero1, overlap
        # the ranks on this machine share its cores: each rank's model gets its share of them (core/cores.py)
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", N))
        model.threads = max(1, min(model.threads, cores.available() // max(local_ranks, 1)))
        self.dist = _dist()
        if zero1:
            self.opt = ShardedAdamW(model.params, ctx.rank, N, lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
            self._grad = np.zeros(N * self.opt.shard, self.opt.buffer.dtype)  # padded, the optimizer's order
            self._grad_shard = np.zeros(self.opt.shard, self.opt.buffer.dtype)
            self._gather = np.zeros(N * self.opt.shard, self.opt.buffer.dtype)
        else:
            self.buckets = GradBuckets(self.opt, backward_order(model), int(bucket_mb * 2**20),
                                       1.0 / (N * c.accum_steps))
        self.comm_bytes = []  # bytes of gradient reduced, per step (the model's gradient, padded for ZeRO-1)
        self.comm_seconds = []  # seconds this rank waited for collectives, per step
        self._stop_request, self._stop_all = None, False  # this rank's StopOnSignal, and the ranks' agreement
        self._collective("broadcast of the initial parameters",
                         lambda: self.dist.broadcast(_tensor(self.opt.buffer), src=0))

    # ---------------------------------------------------------------- collectives with a clear failure
    def _collective(self, what: str, fn):
        try:
            return fn()
        except RuntimeError as exc:  # gloo raises DistBackendError (a RuntimeError) when a peer is gone
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise PeerLostError(
                f"rank {self.ctx.rank} of {self.ctx.world_size}: {what} failed at step {self.state.step} "
                f"({first}). Another rank has died or stopped answering (timeout {self.ctx.timeout:.0f} s; rank 0 "
                "saving a checkpoint for longer looks the same: raise --dist-timeout). The last checkpoint is "
                "intact: relaunch every rank with --resume") from exc

    def _dropout_rng(self) -> np.random.Generator:
        """Rank 0 uses the saved dropout stream; rank r > 0 one derived from (seed, rank, step), so resumes agree."""
        if self.ctx.rank == 0:
            return self.dropout_rng
        return np.random.default_rng([self.config.seed, 2, self.ctx.rank, self.state.step])

    # ---------------------------------------------------------------- one step
    def train_step(self) -> float:
        c, model, N, r = self.config, self.model, self.ctx.world_size, self.ctx.rank
        b = c.batch_size // N
        rng, total, waited, loads = self._dropout_rng(), 0.0, 0.0, None
        for micro in range(c.accum_steps):
            x, y = get_batch(self.train_tokens, c.batch_size, self.context, self.batch_rng)  # the global batch
            total += model.loss(x[r * b:(r + 1) * b], y[r * b:(r + 1) * b], rng=rng, train=True)  # (b, T): mine
            loads = moe.add_loads(loads, model.last_expert_load)
            if self.zero1:  # the whole local gradient, in the optimizer's order (padded to N slices)
                n = self.opt.buffer.size
                if micro == 0:
                    self.opt.gather(model.backward(), out=self._grad[:n])
                else:
                    self._grad[:n] += self.opt.gather(model.backward())
            else:
                last = micro == c.accum_steps - 1
                self.buckets.start(accumulate=micro > 0, launch=last and self.overlap)
                model.backward(on_grads=self.buckets.add)
        t0 = time.perf_counter()
        if self.zero1:
            self._grad *= 1.0 / (N * c.accum_steps)
            self._collective("reduce-scatter of the gradient", lambda: _reduce_scatter(
                self.dist, self._grad_shard, self._grad))
            sent = self._grad.nbytes
        else:
            self._collective("all-reduce of the gradient", lambda: self.buckets.finish(self._grad))
            sent = self.buckets.bytes_sent
        # the loss travels with this rank's stop flag: the summed flags tell every rank to stop after this step
        loss = np.array([total / c.accum_steps, float(getattr(self._stop_request, "requested", False))])
        self._collective("all-reduce of the loss", lambda: self.dist.all_reduce(_tensor(loss)))
        waited += time.perf_counter() - t0
        self._stop_all = self._stop_all or loss[1] > 0
        loss = float(loss[0]) / N
        if not math.isfinite(loss):  # every rank holds the same summed loss: all of them stop here
            self._diverged(f"the loss became {loss}")
        lr = lr_at(self.state.step, c.lr, c.warmup, c.steps, c.min_lr)
        if self.zero1:
            waited += self._zero1_update(lr)
        else:
            clip_to_norm(self._grad, float(np.sqrt(np.dot(self._grad, self._grad))), c.grad_clip)
            self.opt.step(self._grad, lr=lr)
        if not np.isfinite(self.opt.buffer).all():  # the same weights on every rank: all of them agree
            self._diverged("the weights stopped being finite after the update")
        waited += self._balance_routers(loads)
        self.comm_bytes.append(sent)
        self.comm_seconds.append(waited)
        self.state.step += 1
        self.state.tokens_seen += c.accum_steps * c.batch_size * self.context
        return loss

    def _balance_routers(self, loads) -> float:
        """MoE: move the router biases by the whole batch's expert loads, as one process does after its
        step (`moe.balance_routers`): each rank counted its own rows, so the counts are summed over the
        ranks first. Returns the seconds spent in the all-reduce (0 for a dense model)."""
        mine = [load for load in loads or [] if load is not None]
        if not mine or not getattr(self.model.config, "balance_speed", 0) > 0:
            return 0.0
        counts = np.concatenate([np.asarray(load, np.float64) for load in mine])  # exact: whole numbers
        t0 = time.perf_counter()
        self._collective("all-reduce of the expert loads", lambda: self.dist.all_reduce(_tensor(counts)))
        summed = iter(np.split(counts, np.cumsum([load.size for load in mine])[:-1]))
        moe.balance_routers(self.model.params, [None if load is None else next(summed) for load in loads],
                            self.model.config)
        return time.perf_counter() - t0

    def _zero1_update(self, lr: float) -> float:
        """Clip by the global norm, update my slice, all-gather the parameters; returns seconds in collectives."""
        opt, k = self.opt, self.opt.hi - self.opt.lo
        mine = self._grad_shard[:k]
        sq = np.array([np.dot(mine, mine)], np.float64)
        t0 = time.perf_counter()
        self._collective("all-reduce of the gradient norm", lambda: self.dist.all_reduce(_tensor(sq)))
        waited = time.perf_counter() - t0
        clip_to_norm(mine, float(np.sqrt(sq[0])), self.config.grad_clip)
        opt.step(mine, lr=lr)
        send = np.zeros(opt.shard, opt.buffer.dtype)
        send[:k] = opt.buffer[opt.lo:opt.hi]
        t0 = time.perf_counter()
        self._collective("all-gather of the parameters", lambda: _all_gather(self.dist, self._gather, send))
        opt.buffer[:] = self._gather[:opt.buffer.size]
        return waited + time.perf_counter() - t0

    # ---------------------------------------------------------------- checkpoints and memory
    def save(self, path) -> None:
        """Rank 0 writes the checkpoint a single process would; with ZeRO-1 the moments are gathered first,
        so every rank calls this (`run` does), not rank 0 alone.

        As a single process does, it first checks that the weights are finite and give a finite loss
        (`Trainer.check_savable`): a diverged run never overwrites its last good checkpoint.
        """
        self.check_savable()  # every rank holds the same weights, so every rank agrees
        opt = self.opt
        if self.zero1:
            full = []
            for part in (opt.m, opt.v):
                send = np.zeros(opt.shard, opt.buffer.dtype)
                send[:part.size] = part
                self._collective("all-gather of the optimizer state",
                                 lambda: _all_gather(self.dist, self._gather, send))
                full.append(self._gather[:opt.buffer.size].copy())
            opt = SimpleNamespace(m=full[0], v=full[1], t=opt.t)
        if self.ctx.rank == 0:
            save_checkpoint(path, SimpleNamespace(model=self.model, opt=opt, config=self.config, state=self.state,
                                                  batch_rng=self.batch_rng, dropout_rng=self.dropout_rng,
                                                  tokenizer_sha256=getattr(self, "tokenizer_sha256", None),
                                                  run_info=getattr(self, "run_info", {})))
        self.last_checkpoint = (path, self.state.step)

    def describe(self) -> str:
        """One line: ranks, rows, optimizer memory and, once steps ran, the communication per step."""
        mem, N = self.optimizer_state_bytes(), self.ctx.world_size
        text = (f"data parallel: {N} ranks of {self.config.batch_size // N} rows; Adam state {mem['per_rank']:,} "
                f"bytes per rank" + (f" (ZeRO-1 saves {mem['saved']:,})" if self.zero1 else ""))
        if self.comm_bytes:
            text += (f"; per step {self.comm_bytes[-1]:,} bytes of gradient reduced, "
                     f"{np.median(self.comm_seconds) * 1e3:.1f} ms waiting for the other ranks (median)")
        return text

    def optimizer_state_bytes(self) -> dict:
        """Adam's moments on this rank, and what they would take unsharded."""
        full = 2 * self.opt.buffer.nbytes
        mine = self.opt.m.nbytes + self.opt.v.nbytes
        return {"per_rank": mine, "unsharded": full, "saved": full - mine}


def _reduce_scatter(dist, out: np.ndarray, full: np.ndarray) -> None:
    fn = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    fn(_tensor(out), _tensor(full))


def _all_gather(dist, out: np.ndarray, mine: np.ndarray) -> None:
    fn = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    fn(_tensor(out), _tensor(mine))
