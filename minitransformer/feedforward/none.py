"""``ffn="none"``: a feed-forward sub-layer that adds nothing, for attention-only models.

A transformer without MLPs is the object of Elhage et al. (2021), "A Mathematical
Framework for Transformer Circuits": every path through it is a product of attention
heads, which is what makes induction heads easy to see forming (the lab's experiment,
`minitransformer.lab.induction`). The sub-layer keeps the stage contract so the model
needs no special case: no parameters, an output of zeros, a gradient of zeros.

    >>> import numpy as np
    >>> y, cache = forward({}, np.ones((1, 3, 4), np.float32), config=None)
    >>> y.shape, float(abs(y).max()), cache
    ((1, 3, 4), 0.0, {})

Dimension letters: B batch, T time, C model width.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def init(config, rng: np.random.Generator) -> dict:
    """No parameters."""
    return {}


def forward(params: dict, x: np.ndarray, config, need_cache: Optional[bool] = None):
    """``x (B, T, C) -> zeros (B, T, C)``: nothing is added to the residual stream, nothing kept."""
    return np.zeros_like(x), {}  # (B, T, C)


def backward(params: dict, cache: dict, dy: np.ndarray):
    """The input does not reach the output, so its gradient is zero; no parameters, no grads."""
    return np.zeros_like(dy), {}  # (B, T, C)


def flops_per_token(config, seq_len: Optional[int] = None) -> int:
    """Nothing is computed."""
    return 0
