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

from ..core.blocks import row_blocks
from ..core.tree import flatten, set_path


class AdamW:
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), over one flat buffer.

    Weight decay applies to matrices (2-D arrays: weights and embeddings), never to
    biases or norm gains, as in GPT-2 and nanoGPT.

    Args:
        params: the model's nested parameter dict; its arrays are replaced, in place,
            by views into the optimizer's buffer (values unchanged).
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
        self.buffer = np.concatenate([flat[n].reshape(-1) for n in self.names]).astype(np.float32)
        for n in self.names:  # make the model's arrays views of the buffer
            set_path(params, n, self.view(self.buffer, n))
        self.m = np.zeros_like(self.buffer)
        self.v = np.zeros_like(self.buffer)
        self.t = 0
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self._g = np.zeros_like(self.buffer)
        self._tmp = np.zeros_like(self.buffer)

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

        note: the buffer is updated block by block (`core.blocks.row_blocks`, 64K values): the dozen
        passes of an Adam update then run on slices that stay in the L2 cache, instead of
        streaming five model-sized arrays through main memory a dozen times.
        """
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        # bias correction folded into the step size and epsilon (same maths, fewer passes)
        c1, c2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        decay = 1.0 - lr * self.weight_decay  # decoupled: not part of the gradient
        blocks = row_blocks(self.buffer.size, 1)
        scratch = np.empty_like(self.buffer[blocks[0]])  # one block (not self._tmp: grad may be that array)
        for r in blocks:
            m, v, g, p = self.m[r], self.v[r], grad[r], self.buffer[r]
            s = scratch[:len(p)]
            m *= b1
            m += np.multiply(g, 1.0 - b1, out=s)  # m = b1 m + (1 - b1) g
            np.multiply(g, g, out=s)
            s *= 1.0 - b2
            v *= b2
            v += s  # v = b2 v + (1 - b2) g²
            np.sqrt(v, out=s)
            s *= 1.0 / math.sqrt(c2)
            s += self.eps
            np.divide(m, s, out=s)
            start = r.start or 0  # (a single block is slice(None))
            if self.weight_decay and start < self.n_decay:  # decayed matrices come first in the buffer
                p[:self.n_decay - start] *= decay
            s *= lr / c1
            p -= s

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        for key in ("m", "v"):
            if state[key].shape != self.buffer.shape:
                raise ValueError(f"optimizer state {key!r} has {state[key].size} values, the model {self.buffer.size}")
            getattr(self, key)[:] = state[key]
        self.t = int(state["t"])


def clip_grad_norm(grad: np.ndarray, max_norm: float) -> float:
    """Scale the flat gradient in place so its L2 norm is at most ``max_norm``; return the norm before."""
    norm = float(np.sqrt(np.dot(grad, grad)))
    if max_norm and norm > max_norm:
        grad *= max_norm / (norm + 1e-6)
    return norm


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
