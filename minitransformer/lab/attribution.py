"""Attribution patching: every patch at once, estimated with one backward pass (Nanda, 2023; Syed et al., 2023).

Activation patching runs the model once per patch. Its first-order Taylor estimate needs
one forward on each prompt and one backward on the clean one. For the noising patch
"run the clean prompt with activation a taken from the corrupted run":

    metric(clean with a_corrupted)  ~  metric(clean) + (a_corrupted - a_clean) . d metric / d a

with the gradient taken on the clean run. The dot product is summed over the dimensions
a patch replaces: over the width C for one position of the residual stream, over the
positions and D for a head's ``hook_z``. The estimate is exact for a patch that is
linear in its effect, and is only a guide for large changes (attention patterns
saturate, norms rescale): compare it with `patching` on the heads that matter.

The gradients come from the model's own hand-written `model.backward`, through its
``on_grad(name, grad)`` callback; nothing is differentiated twice.

Dimension letters: B batch, T positions, C width, H heads, D head width, L layers.
"""

from __future__ import annotations

import numpy as np

from ..model import backward as model_backward
from ..model import forward as model_forward
from ..trace.cache import collect, run_with_cache
from .inputs import check_ids, check_pair
from .patching import RESIDUAL


def activation_gradients(model, ids, metric) -> tuple[float, dict, dict]:
    """``(metric value, activations, gradients)`` of one run: both dicts keyed by published names.

    ``metric`` needs ``metric(logits) -> float`` and ``metric.grad(logits) -> d metric / d logits``
    (as `patching.LogitDiff` has).
    """
    if not callable(getattr(metric, "grad", None)):
        raise ValueError("attribution patching needs the metric's gradient: give an object with "
                         "__call__(logits) and grad(logits) (see minitransformer.lab.patching.LogitDiff)")
    ids = check_ids(ids)
    logits, cache = model_forward(model.params, model.config, ids, need_cache=True)
    grads: dict[str, np.ndarray] = {}

    def keep(name: str, grad: np.ndarray) -> None:
        grads[name] = grad.copy()  # the backward may reuse its arrays

    model_backward(model.params, model.config, cache, metric.grad(logits), on_grad=keep)
    return metric(logits), collect(model, cache, logits), grads


def attribution_patching(model, clean_ids, corrupted_ids, metric) -> dict:
    """Estimated change of ``metric`` for every noising patch (corrupted activation into the clean run).

    Returns ``{"clean": metric value}`` and the estimates: for each of ``resid_pre``, ``resid_mid``,
    ``resid_post``, ``attn_out``, ``mlp_out`` an (L, T) array (one position patched), ``heads``
    (L, H) (one head's ``hook_z`` at all positions) and ``heads_by_position`` (L, T, H).
    Compare with ``patching.patch_residual(model, clean_ids, corrupted_cache, metric) - clean``.
    """
    clean_ids, corrupted_ids = check_pair(clean_ids, corrupted_ids)
    value, clean, grads = activation_gradients(model, clean_ids, metric)
    _, corrupted = run_with_cache(model, corrupted_ids)
    L = model.config.n_layers
    out: dict = {"clean": value}
    for kind in RESIDUAL:
        rows = []
        for layer in range(L):
            name = f"blocks.{layer}.hook_{kind}"
            diff = corrupted[name].astype(np.float64) - clean[name]  # (B, T, C)
            rows.append(np.einsum("btc,btc->t", diff, grads[name]))  # (T,)
        out[kind] = np.stack(rows)  # (L, T)
    by_position = []
    for layer in range(L):
        name = f"blocks.{layer}.attn.hook_z"
        diff = corrupted[name].astype(np.float64) - clean[name]  # (B, T, H, D)
        by_position.append(np.einsum("bthd,bthd->th", diff, grads[name]))  # (T, H)
    out["heads_by_position"] = np.stack(by_position)  # (L, T, H)
    out["heads"] = out["heads_by_position"].sum(axis=1)  # (L, H)
    return out
