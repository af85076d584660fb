"""Stage 5, feed-forward (IR concept: processing): the position-wise MLP.

After attention has retrieved what each position needs, the MLP processes every
position on its own: widen from C to F, apply a non-linearity, narrow back to C
(Vaswani et al., 2017, "position-wise feed-forward"; Geva et al., 2021, read its
two matrices as keys and values of a memory). The output head, in `output`,
then turns the residual stream into logits over the vocabulary.

    >>> import numpy as np
    >>> from minitransformer.core.config import ModelConfig
    >>> cfg = ModelConfig.preset("toy", ffn="swiglu")
    >>> params = init(cfg, np.random.default_rng(0))
    >>> sorted(params), params["W_in"].shape
    (['W_gate', 'W_in', 'W_out', 'b_gate', 'b_in', 'b_out'], (32, 88))
    >>> y, cache = forward(params, np.ones((2, 5, 32), np.float32), cfg)
    >>> y.shape, y.dtype, cache["hook_post"].shape
    ((2, 5, 32), dtype('float32'), (2, 5, 88))

Variants (``config.ffn``): ``"gelu"``, GPT-2's MLP (Radford et al., 2019), and
``"swiglu"``, a gated MLP (Shazeer, 2020, "GLU Variants Improve Transformer").
Deliberately left out: dropout (the model applies it on the residual stream).

Dimension letters: B batch, T time, C model width, F hidden width.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..core import nn


# --------------------------------------------------------------------------- the MLP
KINDS = ("gelu", "swiglu")  # the two MLPs this module builds (registered under these names)


def init(config, rng: np.random.Generator, kind: Optional[str] = None) -> dict:
    """Weights ~ N(0, init_std) in float32, biases zero (only if ``config.bias``).

    Returns ``{"W_in": (C, F), "W_out": (F, C)}`` plus ``"W_gate": (C, F)`` for SwiGLU,
    and ``b_in``/``b_out`` (and ``b_gate``) when the config has biases. ``kind`` ("gelu" or
    "swiglu") defaults to ``config.ffn``.
    """
    kind = kind or config.ffn
    if kind not in KINDS:
        raise ValueError(f"the MLP kind {kind!r} is not one of {', '.join(map(repr, KINDS))}")
    C, F, std = config.d_model, config.ff_width, float(config.init_std)
    # note: W_out writes into the residual stream, which sums 2 * n_layers such writes
    # (attention and MLP per block); GPT-2 scales these projections by 1/sqrt(2 * n_layers)
    # so the stream's variance at init does not grow with depth.
    out_std = std / math.sqrt(2 * config.n_layers)
    params = {"W_in": rng.standard_normal((C, F), dtype=np.float32) * std,  # (C, F)
              "W_out": rng.standard_normal((F, C), dtype=np.float32) * out_std}  # (F, C)
    if kind == "swiglu":
        params["W_gate"] = rng.standard_normal((C, F), dtype=np.float32) * std  # (C, F)
    if config.bias:
        params["b_in"], params["b_out"] = np.zeros(F, np.float32), np.zeros(C, np.float32)
        if kind == "swiglu":
            params["b_gate"] = np.zeros(F, np.float32)
    return params


def flops_per_token(config) -> int:
    """Forward FLOPs per token (2 per multiply-add): C·F in, F·C out, and C·F more for SwiGLU's gate."""
    matrices = 3 if config.ffn == "swiglu" else 2
    return 2 * matrices * config.d_model * config.ff_width


def forward(params: dict, x: np.ndarray, config, need_cache: Optional[bool] = None):
    """Process every position on its own: ``x (B, T, C) -> y (B, T, C)``, same dtype.

    gelu:   ``y = gelu(x @ W_in + b_in) @ W_out + b_out``
    swiglu: ``y = (silu(x @ W_gate) * (x @ W_in)) @ W_out``  (plus biases if present)

    Returns ``(y, cache)``. The cache names the activations ``hook_pre`` (what goes into
    the non-linearity; for SwiGLU the gate), ``hook_pre_linear`` (SwiGLU's ungated branch)
    and ``hook_post`` (the hidden vector that ``W_out`` reads), all (B, T, F); what only
    backward reads (the input, SwiGLU's sigmoid) is under ``saved``. Inside
    `nn.lean_caches` (training) the GELU MLP keeps GELU's derivative there instead of ``hook_pre``. It is None
    when `nn.want_cache` says no (``need_cache=False``, or None inside `nn.no_grad`).
    """
    if x.shape[-1] != params["W_in"].shape[0]:
        raise ValueError(f"x has width {x.shape[-1]} on its last axis, but the MLP expects d_model={params['W_in'].shape[0]}")
    # note: the kind is read from the parameters (SwiGLU has a gate), so one forward serves both
    if "W_gate" in params:
        gate, _ = nn.linear_forward(x, params["W_gate"], params.get("b_gate"))  # (B, T, C) -> (B, T, F)
        up, _ = nn.linear_forward(x, params["W_in"], params.get("b_in"))  # (B, T, C) -> (B, T, F)
        act, (_, sig) = nn.silu_forward(gate)  # (B, T, F)
        # the gate decides, per hidden unit, how much of the linear branch passes
        post = act * up  # (B, T, F)
        cache = {"hook_pre": gate, "hook_pre_linear": up, "hook_post": post,
                 "saved": {"x": x, "sigmoid_of_gate": sig}}  # what only backward reads
    else:
        pre, _ = nn.linear_forward(x, params["W_in"], params.get("b_in"))  # (B, T, C) -> (B, T, F)
        if nn.lean() and nn.want_cache(need_cache):
            # training (`nn.lean_caches`): GELU's derivative is computed now and kept instead of
            # hook_pre, the same memory, and backward is one multiplication
            post, dgelu = nn.gelu_forward_with_grad(pre)  # (B, T, F) each
            cache = {"hook_post": post, "saved": {"x": x, "gelu_grad": dgelu}}
        else:
            post = nn.gelu(pre)  # (B, T, F)
            # note: GELU's tanh is not kept: backward recomputes it from hook_pre (a few
            # passes over an array that stays in cache), which saves a (B, T, F) array per layer
            cache = {"hook_pre": pre, "hook_post": post, "saved": {"x": x}}  # what only backward reads
    y, _ = nn.linear_forward(post, params["W_out"], params.get("b_out"))  # (B, T, F) -> (B, T, C)
    return y, (cache if nn.want_cache(need_cache) else None)


def backward(params: dict, cache: dict, dy: np.ndarray):
    """Backward of `forward`. Returns ``(dx (B, T, C), grads)`` with the keys of ``params``.

    note: the variant and the biases are read from the keys of ``params`` (``W_gate``,
    ``b_in``), so backward needs no config.
    """
    nn.require_cache(cache)
    saved = cache["saved"]
    has_bias = "b_out" in params
    grads = {}
    dpost, grads["W_out"], db = nn.linear_backward(dy, cache["hook_post"], params["W_out"], has_bias)  # (B, T, C) -> (B, T, F)
    if has_bias:
        grads["b_out"] = db
    if "W_gate" in params:
        gate, up = cache["hook_pre"], cache["hook_pre_linear"]
        act = gate * saved["sigmoid_of_gate"]  # silu(gate), recomputed: cheaper than caching it, (B, T, F)
        dgate = nn.silu_backward(dpost * up, (gate, saved["sigmoid_of_gate"]))  # product rule, gate side
        dx_gate, grads["W_gate"], db = nn.linear_backward(dgate, saved["x"], params["W_gate"], has_bias)  # (B, T, F) -> (B, T, C)
        if has_bias:
            grads["b_gate"] = db
        dup = dpost * act  # product rule, linear side
    elif "gelu_grad" in saved:  # a training forward kept gelu'(pre)
        dup = np.multiply(dpost, saved["gelu_grad"], out=dpost)  # (B, T, F)
    else:
        dup = nn.gelu_backward(dpost, (cache["hook_pre"], None))  # (B, T, F), tanh recomputed
    dx, grads["W_in"], db = nn.linear_backward(dup, saved["x"], params["W_in"], has_bias)  # (B, T, F) -> (B, T, C)
    if has_bias:
        grads["b_in"] = db
    if "W_gate" in params:
        dx += dx_gate  # subtle: x feeds both branches of SwiGLU, so its gradient is the sum of both
    return dx, grads
