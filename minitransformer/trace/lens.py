"""The logit lens: the next-token guess read from the residual stream after each block."""

from __future__ import annotations

import numpy as np

from ..core import nn
from ..feedforward.output import head_forward
from ..model import norm_forward


def logit_lens(model, cache, position: int = -1, k: int = 5) -> list[dict]:
    """The next-token guess read from the residual stream after each block (nostalgebraist, 2020).

    Applies the final norm and the output head to ``blocks.{i}.hook_resid_post`` at ``position``
    of the first sequence: how the prediction forms layer by layer.
    Returns one dict per layer: ``{"layer", "top_ids", "top_probs"}``.
    """
    c, params = model.config, model.params
    W_E = params["embed"]["W_E"] if c.tie_embeddings else None
    rows = []
    for i in range(c.n_layers):
        resid = cache[f"blocks.{i}.hook_resid_post"][0, position]  # (C,)
        h, _ = norm_forward(c, params["ln_final"], resid[None, None])  # (1, 1, C)
        logits, _ = head_forward(params["unembed"], h, W_E=W_E, need_cache=False)  # (1, 1, V)
        probs = nn.softmax(logits[0, 0].astype(np.float64))
        top = np.argsort(-probs, kind="stable")[:k]
        rows.append({"layer": i, "top_ids": top.tolist(), "top_probs": probs[top].tolist()})
    return rows
