"""The optimizer: AdamW over one flat buffer, gradient clipping, and the learning-rate schedule.

The optimizer keeps its state outside the model. For speed it owns one flat
float32 buffer holding *every* parameter: the model's arrays become views into
it, so an AdamW step is a handful of vectorised operations over one long array
instead of a Python loop over dozens of small ones (at toy sizes that loop, not
the arithmetic, would be the cost).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..core import cores
from ..core.blocks import row_blocks
from ..core.tree import flatten, set_path


PARALLEL_UPDATE = 1 << 20  # parameters from which the update is split over the cores


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), over one flat buffer.

    Weight decay applies to matrices (2-D arrays: weights and embeddings), never to
    biases or norm gains, as in GPT-2 and nanoGPT.

    Args:
        params: the model's nested parameter dict; its arrays are replaced, in place,
            by views into the optimizer's buffer (values unchanged). The buffer is float32,
            unless every parameter is float64: then it stays float64 (how a data-parallel
            run is checked against one process to 1e-10).
    """

    def __init__(self, params: dict, lr: float = 3e-4, betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.1):
        flat = flatten(params)
        # decayed arrays first, so decay is one slice: buffer[:n_decay]
        self.names = sorted(flat, key=lambda n: (flat[n].ndim < 2, n))
        self.shapes = {n: flat[n].shape for n in self.names}
        sizes = [flat[n].size for n in self.names]
        self.offsets = dict(zip(self.names, np.cumsum([0] + sizes[:-1]).tolist()))
        self.n_decay = sum(flat[n].size for n in self.names if flat[n].ndim >= 2)
        dtype = np.float64 if all(a.dtype == np.float64 for a in flat.values()) else np.float32
        self.buffer = np.concatenate([flat[n].reshape(-1) for n in self.names]).astype(dtype)
        for n in self.names:  # make the model's arrays views of the buffer
            set_path(params, n, self.view(self.buffer, n))
        self.m = np.zeros_like(self.buffer)
        self.v = np.zeros_like(self.buffer)
        self.t = 0
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self._g = np.zeros_like(self.buffer)
        # scratch: a buffer-sized array free between steps (the update uses it; so may gradient accumulation)
        self.scratch = np.zeros_like(self.buffer)

    def view(self, flat_array: np.ndarray, name: str) -> np.ndarray:
        o = self.offsets[name]
        return flat_array[o:o + math.prod(self.shapes[name])].reshape(self.shapes[name])

    def gather(self, grads: dict, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Copy a nested gradient dict into one flat array in buffer order."""
        out = np.empty_like(self.buffer) if out is None else out
        flat = flatten(grads)
        missing = set(self.names) - set(flat)
        if missing:
            raise ValueError(f"gradients are missing for {sorted(missing)[:5]}: does every stage have a backward?")
        for n in self.names:
            o = self.offsets[n]
            out[o:o + flat[n].size] = flat[n].reshape(-1)
        return out

    def step(self, grad: np.ndarray, lr: Optional[float] = None) -> None:
        """One update from a flat gradient (see `gather`). All operations are in place.

        note: the update is elementwise, so a large model's buffer is cut into one slice per
        core and the slices are updated side by side (`core.cores`); the numbers are the same.
        """
        self.t += 1
        lr = self.lr if lr is None else lr
        n = self.buffer.size
        threads = cores.available() if n >= PARALLEL_UPDATE else 1
        bounds = [(sl.start, sl.stop) for sl in cores.shard_slices(n, threads)]

        def update(bound):
            lo, hi = bound
            adamw_update(self.buffer[lo:hi], grad[lo:hi], self.m[lo:hi], self.v[lo:hi], self.t, lr,
                         self.betas, self.eps, self.weight_decay, max(self.n_decay - lo, 0))

        cores.run(update, bounds, threads)

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        for key in ("m", "v"):
            if state[key].shape != self.buffer.shape:
                raise ValueError(f"optimizer state {key!r} has {state[key].size} values, the model {self.buffer.size}")
            getattr(self, key)[:] = state[key]
        self.t = int(state["t"])


def adamw_update(param: np.ndarray, grad: np.ndarray, m: np.ndarray, v: np.ndarray, t: int,
                 lr: float, betas, eps: float, weight_decay: float, n_decay: int) -> None:
    """The AdamW update of step ``t`` on flat arrays, in place; the first ``n_decay`` entries are decayed.

    Elementwise, so a slice of the arrays updates exactly as the whole would: a ZeRO-1
    rank calls it on its shard (see `training.distributed`).

    note: the arrays are updated block by block (`core.blocks.row_blocks`, 128K values): the dozen
    passes of an Adam update then run on slices that stay in the L2 cache, instead of
    streaming five model-sized arrays through main memory a dozen times.
    """
    b1, b2 = betas
    # bias correction folded into the step size and epsilon (same maths, fewer passes)
    c1, c2 = 1.0 - b1 ** t, 1.0 - b2 ** t
    decay = 1.0 - lr * weight_decay  # decoupled: not part of the gradient
    blocks = row_blocks(param.size, 1)
    scratch = np.empty_like(param[blocks[0]])  # one block (its own array: grad may be the optimizer's scratch)
    for r in blocks:
        mb, vb, g, p = m[r], v[r], grad[r], param[r]
        s = scratch[:len(p)]
        mb *= b1
        mb += np.multiply(g, 1.0 - b1, out=s)  # m = b1 m + (1 - b1) g
        np.multiply(g, g, out=s)
        s *= 1.0 - b2
        vb *= b2
        vb += s  # v = b2 v + (1 - b2) g²
        np.sqrt(vb, out=s)
        s *= 1.0 / math.sqrt(c2)
        s += eps
        np.divide(mb, s, out=s)
        start = r.start or 0  # (a single block is slice(None))
        if weight_decay and start < n_decay:  # decayed matrices come first in the buffer
            p[:n_decay - start] *= decay
        s *= lr / c1
        p -= s


def clip_grad_norm(grad: np.ndarray, max_norm: float) -> float:
    """Scale the flat gradient in place so its L2 norm is at most ``max_norm``; return the norm before."""
    norm = float(np.sqrt(np.dot(grad, grad)))
    clip_to_norm(grad, norm, max_norm)
    return norm


def clip_to_norm(grad: np.ndarray, norm: float, max_norm: float) -> None:
    """Scale ``grad``, whose L2 norm is ``norm`` (measured over the whole gradient, which may be
    larger than this array: a ZeRO-1 shard), in place so that norm is at most ``max_norm``."""
    if max_norm and norm > max_norm:
        grad *= max_norm / (norm + 1e-6)


def lr_at(step: int, max_lr: float, warmup: int, total: int, min_lr: float = 0.0) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay from ``max_lr`` to ``min_lr`` at ``total``.

    >>> [round(lr_at(s, 1.0, 2, 10), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


class ShardedAdamW(AdamW):
    """AdamW whose moments cover only this rank's slice of the flat buffer (ZeRO-1).

    The buffer (the parameters) stays whole on every rank; ``m``, ``v`` have ``shard``
    entries, where ``shard = ceil(n / N)`` (the last rank's slice is padded).
    """

    def __init__(self, params: dict, rank: int, world_size: int, **kwargs):
        super().__init__(params, **kwargs)
        n = self.buffer.size
        self.shard = -(-n // world_size)
        self.lo, self.hi = min(rank * self.shard, n), min((rank + 1) * self.shard, n)
        self.m = np.zeros(self.hi - self.lo, self.buffer.dtype)  # the full-size moments are freed
        self.v = np.zeros_like(self.m)

    def step(self, grad_shard: np.ndarray, lr: Optional[float] = None) -> None:
        """Update this rank's slice from the gradient of that slice (``hi - lo`` entries)."""
        self.t += 1
        n_decay = min(max(self.n_decay - self.lo, 0), self.hi - self.lo)
        adamw_update(self.buffer[self.lo:self.hi], grad_shard, self.m, self.v, self.t,
                     self.lr if lr is None else lr, self.betas, self.eps, self.weight_decay, n_decay)

    def load_state_dict(self, state: dict) -> None:
        """Load full-size moments (any checkpoint) and keep this rank's slice."""
        if state["m"].shape != self.buffer.shape:
            raise ValueError(f"optimizer state has {state['m'].size} values, the model {self.buffer.size}")
        self.m[:] = state["m"][self.lo:self.hi]
        self.v[:] = state["v"][self.lo:self.hi]
        self.t = int(state["t"])
