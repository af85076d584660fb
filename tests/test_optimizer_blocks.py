"""AdamW updates its flat buffer block by block; the result is the textbook update."""

import numpy as np
import pytest

from minitransformer.core import blocks
from minitransformer.training import AdamW


@pytest.mark.parametrize("block", [None, 7], ids=["one block", "blocks of 7 (edges inside the decayed part)"])
def test_blocked_adamw_is_adamw_with_decoupled_decay_on_matrices(block, monkeypatch):
    if block is not None:
        monkeypatch.setattr(blocks, "_BLOCK", block)
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(4, 5)).astype(np.float32), "b": rng.normal(size=6).astype(np.float32)}
    start = {k: v.astype(np.float64) for k, v in params.items()}
    opt = AdamW(params, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    m = {k: np.zeros_like(v) for k, v in start.items()}
    v2 = {k: np.zeros_like(v) for k, v in start.items()}
    p = dict(start)
    for t in range(1, 4):
        grads = {k: rng.normal(size=v.shape) for k, v in start.items()}
        # the last step's gradient lives in the optimizer's own scratch array (as the trainer's accumulation uses it)
        out = opt.scratch if t == 3 else None
        opt.step(opt.gather({k: g.astype(np.float32) for k, g in grads.items()}, out=out))
        for k in p:  # the textbook update, float64
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v2[k] = 0.95 * v2[k] + 0.05 * grads[k] ** 2
            decay = 1 - 0.01 * 0.1 if k == "W" else 1.0
            p[k] = p[k] * decay - 0.01 * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v2[k] / (1 - 0.95 ** t)) + 1e-8)
    for k in p:
        np.testing.assert_allclose(params[k], p[k], rtol=1e-5, atol=1e-6, err_msg=k)
