"""Direct logit attribution: the logits split into what each component wrote into the stream.

The residual stream at the end is a sum: the embeddings, the positions, and what every
head, every attention output bias and every MLP added,

    x = embed + pos + sum_l ( sum_h z_lh @ W_O[h] + b_O_l + mlp_out_l )

The output head reads ``ln_final(x) @ W_U``. The norm is not linear, because it divides
by the standard deviation of x (or its RMS), a scale that depends on every component.
Direct logit attribution freezes that scale at its value in the run ("the clean run's
scale"); then the head is linear and each component gets its share:

    LayerNorm:  logits = sum_k ((x_k - mean(x_k)) / scale) * w @ W_U  +  b @ W_U
    RMSNorm:    logits = sum_k (x_k / scale) * w @ W_U

The mean-centering is linear too, so each component is centered on its own (as
TransformerLens' ``apply_ln_to_stack`` does); with ``center=False`` the components are
left as they are and the centering, ``-mean(x) / scale * w @ W_U``, is a contribution
of its own. The norm's bias ``b @ W_U`` is always its own contribution. With the scale
frozen, the contributions sum to the logits exactly (up to rounding).

A component's direct effect is not its total effect: what a head writes is also read by
later heads and MLPs. Path patching (`paths.py`) and activation patching measure those.

Dimension letters: B batch, T positions, C width, H heads, D head width, V vocabulary, N components.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..trace import run_with_cache
from .inputs import check_ids, check_position, check_token_ids


@dataclass
class Attribution:
    """``values`` (N, B, T, K): component n's direct contribution to the K chosen logits; ``labels`` (N,)."""

    labels: list
    values: np.ndarray
    token_ids: Optional[np.ndarray]  # the K token ids, or None for the whole vocabulary

    def total(self) -> np.ndarray:
        """The sum over components: the logits (B, T, K)."""
        return self.values.sum(axis=0)

    def of(self, label: str) -> np.ndarray:
        """One component's contribution (B, T, K)."""
        if label not in self.labels:
            raise ValueError(f"no component {label!r}; components are {self.labels}")
        return self.values[self.labels.index(label)]

    def heads(self) -> np.ndarray:
        """The heads' contributions as (L, H, B, T, K)."""
        keys = [lab for lab in self.labels if lab[0] == "L" and "H" in lab]
        L = 1 + max(int(k[1:k.index("H")]) for k in keys)
        return np.stack([self.of(k) for k in keys]).reshape(L, -1, *self.values.shape[1:])


def components(model, cache) -> tuple[list, list]:
    """``(labels, arrays)``: the terms (B, T, C) that add up to the final residual stream.

    Labels: ``embed``, ``pos_embed`` (learned or sinusoidal positions), ``L{l}H{h}`` for each head,
    ``L{l} attn bias`` (b_O, when the model has biases), ``L{l} mlp``.
    """
    c = model.config
    embed = cache["hook_embed"]  # (B, T, C)
    labels, arrays = ["embed"], [embed]
    if "hook_pos_embed" in cache:
        labels.append("pos_embed")
        arrays.append(np.broadcast_to(cache["hook_pos_embed"], embed.shape))  # (T, C) -> (B, T, C)
    for layer in range(c.n_layers):
        a = model.params["blocks"][layer]["attn"]
        z = cache[f"blocks.{layer}.attn.hook_z"]  # (B, T, H, D)
        D = z.shape[-1]
        W_O = a["W_O"].reshape(c.n_heads, D, -1)  # (H*D, C) -> (H, D, C)
        per_head = np.einsum("bthd,hdc->hbtc", z, W_O)  # (H, B, T, C)
        for h in range(c.n_heads):
            labels.append(f"L{layer}H{h}")
            arrays.append(per_head[h])
        if "b_O" in a:
            labels.append(f"L{layer} attn bias")
            arrays.append(np.broadcast_to(a["b_O"], embed.shape))
        labels.append(f"L{layer} mlp")
        arrays.append(cache[f"blocks.{layer}.hook_mlp_out"])
    return labels, arrays


def unembedding(model) -> np.ndarray:
    """The output head's matrix W_U (C, V) (W_E transposed when tied)."""
    if model.config.tie_embeddings:
        return model.params["embed"]["W_E"].T
    return model.params["unembed"]["W_U"]


def direct_logit_attribution(model, ids, token_ids=None, center: bool = True) -> Attribution:
    """Split the logits of ``ids`` (B, T) into per-component contributions, the final norm's scale frozen.

    Args:
        token_ids: the logits to attribute (K ids in 0..V-1); None for all V.
        center: center each component on its own (default), or keep the centering as one
            contribution ``ln_final centering`` (LayerNorm only).
    Returns: an `Attribution` whose values sum over components to the logits.
    """
    ids = check_ids(ids)
    if token_ids is not None:
        token_ids = check_token_ids(token_ids, "token_ids", model.config.vocab_size).reshape(-1)
    _, cache = run_with_cache(model, ids)
    labels, arrays = components(model, cache)
    ln = model.params["ln_final"]
    scale = cache["ln_final.hook_scale"]  # (B, T, 1): the run's own scale, frozen
    layernorm = model.config.norm == "layernorm"
    W_U = unembedding(model)  # (C, V)
    if token_ids is not None:
        W_U = W_U[:, token_ids]  # (C, K)
    stack = np.stack(arrays).astype(np.float64, copy=False)  # (N, B, T, C)
    if layernorm and not center:
        total = stack.sum(axis=0)  # (B, T, C): the final stream
        labels = labels + ["ln_final centering"]
        stack = np.concatenate([stack, -total.mean(axis=-1, keepdims=True)[None] * np.ones_like(total)[None]])
    elif layernorm:
        stack = stack - stack.mean(axis=-1, keepdims=True)  # each component centered
    values = (stack / scale * ln["w"]) @ W_U  # (N, B, T, C) @ (C, K) -> (N, B, T, K)
    if layernorm:
        labels = labels + ["ln_final bias"]
        bias = np.broadcast_to(ln["b"] @ W_U, values.shape[1:])  # (K,) -> (B, T, K)
        values = np.concatenate([values, bias[None]])
    return Attribution(labels, values, token_ids)


def logit_diff_attribution(model, ids, correct: int, incorrect: int, position: int = -1) -> Attribution:
    """Each component's direct contribution to ``logit[correct] - logit[incorrect]`` at ``position``: values (N, B)."""
    ids = check_ids(ids)
    check_token_ids(correct, "correct", model.config.vocab_size, one=True)
    check_token_ids(incorrect, "incorrect", model.config.vocab_size, one=True)
    check_position(position, ids.shape[1])
    att = direct_logit_attribution(model, ids, token_ids=[correct, incorrect])
    diff = att.values[:, :, position, 0] - att.values[:, :, position, 1]  # (N, B)
    return Attribution(att.labels, diff, np.array([correct, incorrect]))
