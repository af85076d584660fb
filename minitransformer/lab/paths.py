"""Path patching: the effect of one head along one path only (Wang et al., 2022; Goldowsky-Dill et al., 2023).

Activation patching a head changes everything downstream of it. Path patching asks
a narrower question: how much of the head's effect travels along a chosen path,
say from the sender head into a receiver head's queries, or straight to the logits?

The definition implemented here, exactly. Base run: the clean prompt. The sender head
(layer ``ls``, head ``hs``) writes ``z[:, :, hs] @ W_O[hs]`` into the residual stream;
its change between the runs is

    delta = (z_corrupted[:, :, hs] - z_clean[:, :, hs]) @ W_O[hs]        (B, T, C)

- head -> head: a receiver head (``lr > ls``, ``hr``) reads its query, key and/or value
  input from ``resid_pre_clean[lr] + delta``; its other inputs, and every other head of
  the layer, read the clean ``resid_pre[lr]``. Every component between sender and
  receiver (the other heads, the MLPs, the sender's own layer's MLP) is thereby frozen
  at its clean value: delta reaches the receiver only directly. The receiver's norm
  (``ln1``) is recomputed on its patched input. The receiver's new output then replaces
  its ``hook_z`` in the clean run and everything after it is recomputed.
- head -> logits: delta is added to the stream after the last block (the input of
  ``ln_final``), so it reaches the logits through the final norm and the unembedding
  only; every block is frozen at its clean value. The final norm is recomputed.

Receivers may be several heads and ``"logits"`` at once; they all receive the same delta
(computed from the clean cache) in one run. Senders at or after a receiver's layer give NaN.

Supports the multi-head family (MHA, GQA, MQA) with any positional variant: what it offers
attention (a rotation of q and k, like RoPE, or a score bias, like ALiBi) is applied as
the model's attention applies it. MLA's heads are not written out here.

Dimension letters: B batch, T positions, C width, H heads, G key/value heads, D head width, L layers.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ..core import registry
from ..core.values import is_int
from ..model import norm_forward
from ..trace import run_with_cache, run_with_hooks
from .inputs import check_ids, check_pair, check_same_shape
from .patching import Metric


def _check_mha(model) -> None:
    # note: read from the parameters, not the variant's name: any attention with per-head slices of
    # W_Q, W_K, W_V and W_O (MHA, GQA, MQA, a student's variant of them) can be written out head by head
    if not {"W_Q", "W_K", "W_V", "W_O"} <= set(model.params["blocks"][0]["attn"]):
        raise ValueError(f"path patching writes out one head of multi-head attention (W_Q, W_K, W_V, W_O); "
                         f"the {model.config.attention!r} attention has no W_K and W_V of its own (MLA's heads "
                         "share a latent): use activation patching instead")


def _check_head(model, pair, what: str, alternative: str = "") -> tuple[int, int]:
    """Return ``pair`` as (layer, head) if it names a head of ``model``, else refuse it.

    Negative indices are refused: numpy would read them from the end (or, in a slice of W_O, as nothing).
    """
    L, H = model.config.n_layers, model.config.n_heads

    def index(i, n: int) -> bool:
        return is_int(i) and 0 <= i < n

    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and index(pair[0], L) and index(pair[1], H)):
        raise ValueError(f"{what} is (layer, head){alternative} with layer in 0..{L - 1} and head in 0..{H - 1} "
                         f"(no negative indices), got {pair!r}")
    return int(pair[0]), int(pair[1])


def _check_inputs(inputs: str) -> None:
    if not isinstance(inputs, str) or not inputs or set(inputs) - set("qkv"):
        raise ValueError(f"inputs={inputs!r}: use a non-empty combination of 'q', 'k' and 'v', e.g. 'qkv' or 'q'")


def head_output(model, layer: int, head: int, z_head: np.ndarray) -> np.ndarray:
    """What head ``head`` writes into the stream: z_head (B, T, D) @ its slice of W_O -> (B, T, C)."""
    _check_head(model, (layer, head), "the head")
    D = model.config.d_head
    W_O = model.params["blocks"][layer]["attn"]["W_O"]  # (H*D, C)
    return z_head @ W_O[head * D:(head + 1) * D]  # (B, T, D) @ (D, C) -> (B, T, C)


def head_z(model, layer: int, head: int, x_q: np.ndarray, x_k: np.ndarray, x_v: np.ndarray) -> np.ndarray:
    """One head's z (B, T, D), its query, key and value read from residual streams x_q, x_k, x_v (B, T, C).

    With all three the layer's clean ``hook_resid_pre`` it equals the model's ``hook_z[:, :, head]``.
    """
    _check_mha(model)
    _check_head(model, (layer, head), "the head")
    c, p = model.config, model.params["blocks"][layer]
    D, R = c.d_head, c.n_heads // c.kv_heads
    g = head // R  # the key/value head this query head reads (grouped-query attention)
    a = p["attn"]

    def project(x, W, b, j):
        h = norm_forward(c, p["ln1"], x)[0]  # (B, T, C), the norm recomputed on this input
        out = h @ a[W][:, j * D:(j + 1) * D]  # (B, T, C) -> (B, T, D)
        return out + a[b][j * D:(j + 1) * D] if b in a else out

    q, k, v = project(x_q, "W_Q", "b_Q", head), project(x_k, "W_K", "b_K", g), project(x_v, "W_V", "b_V", g)
    T = q.shape[1]
    positions = np.arange(T)
    pos = registry.chosen("positional", c)  # what the positional variant offers attention
    if pos.rotate is not None:  # RoPE, or another rotary variant: q and k turned to their positions
        q, k = pos.rotate(q, positions, c), pos.rotate(k, positions, c)  # (B, T, D) each
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(D)  # (B, T, D) @ (B, D, T) -> (B, T, T)
    scores = scores + np.where(np.triu(np.ones((T, T), bool), 1), -np.inf, 0.0)  # causal
    score_bias = pos.score_bias
    if score_bias is not None:  # a bias by distance (ALiBi): this head's (T, T) slice
        scores = scores + np.asarray(score_bias(positions, positions, c))[head]  # (T, T)
    scores = scores - scores.max(axis=-1, keepdims=True)
    pattern = np.exp(scores)
    pattern /= pattern.sum(axis=-1, keepdims=True)  # (B, T, T)
    return (pattern @ v).astype(x_q.dtype)  # (B, T, T) @ (B, T, D) -> (B, T, D)


def _parse_receivers(model, receivers) -> tuple[list, bool]:
    heads, to_logits = [], False
    for r in receivers:
        if isinstance(r, str) and r == "logits":
            to_logits = True
            continue
        heads.append(_check_head(model, r, "a receiver", " or 'logits'"))
    if not heads and not to_logits:
        raise ValueError("give at least one receiver: (layer, head) pairs and/or 'logits'")
    return heads, to_logits


def path_patch(model, clean_cache, corrupted_cache, clean_ids, sender: tuple, receivers, inputs: str = "qkv") -> np.ndarray:
    """Logits of the clean run in which only the paths sender -> receivers carry the corrupted sender.

    Args:
        clean_cache, corrupted_cache: `run_with_cache` of the clean prompt (``clean_ids``, (B, T)) and of
            the corrupted one, which must have the same shape.
        sender: (layer, head).
        receivers: a list of (layer, head) and/or ``"logits"`` (see the module docstring).
        inputs: which inputs of receiver heads take the patched stream, any of ``"q"``, ``"k"``, ``"v"``.
    """
    _check_mha(model)
    _check_inputs(inputs)
    heads, to_logits = _parse_receivers(model, receivers)
    ls, hs = _check_head(model, sender, "the sender")
    if any(lr <= ls for lr, _ in heads):
        raise ValueError(f"every receiver head must be in a later layer than the sender (layer {ls}), got {heads}")
    clean_ids = check_ids(clean_ids, "clean_ids")
    z_name = f"blocks.{ls}.attn.hook_z"
    z_clean, z_corrupted = clean_cache[z_name], corrupted_cache[z_name]  # (B, T, H, D)
    check_same_shape(z_clean.shape[:2], z_corrupted.shape[:2], "the clean run", "the corrupted run")
    if z_clean.shape[:2] != clean_ids.shape:
        raise ValueError(f"clean_ids has shape {clean_ids.shape} but clean_cache is of a run of shape "
                         f"{z_clean.shape[:2]}: give the cache of run_with_cache(model, clean_ids)")
    delta = head_output(model, ls, hs, z_corrupted[:, :, hs] - z_clean[:, :, hs])  # (B, T, C)

    new_z: dict[int, dict[int, np.ndarray]] = {}
    for lr, hr in heads:
        clean = clean_cache[f"blocks.{lr}.hook_resid_pre"]  # (B, T, C)
        x = {k: (clean + delta if k in inputs else clean) for k in "qkv"}
        new_z.setdefault(lr, {})[hr] = head_z(model, lr, hr, x["q"], x["k"], x["v"])

    def replacing(by_head: dict):
        def replace(z):
            z = z.copy()
            for hr, zr in by_head.items():
                z[:, :, hr] = zr
            return z
        return replace

    hooks = {f"blocks.{lr}.attn.hook_z": replacing(by_head) for lr, by_head in new_z.items()}
    if to_logits:
        hooks[f"blocks.{model.config.n_layers - 1}.hook_resid_post"] = lambda x: x + delta
    return run_with_hooks(model, clean_ids, hooks)


def path_patch_senders(model, clean_ids, corrupted_ids, receivers, metric: Metric, inputs: str = "qkv") -> np.ndarray:
    """The metric for every sender head, along the paths into ``receivers``: (L, H), NaN where not upstream.

    ``clean_ids`` and ``corrupted_ids`` are (B, T), of the same shape.
    """
    _check_mha(model)
    _check_inputs(inputs)
    heads, _ = _parse_receivers(model, receivers)
    clean_ids, corrupted_ids = check_pair(clean_ids, corrupted_ids)
    _, clean_cache = run_with_cache(model, clean_ids)
    _, corrupted_cache = run_with_cache(model, corrupted_ids)
    first = min((lr for lr, _ in heads), default=model.config.n_layers)
    L, H = model.config.n_layers, model.config.n_heads
    out = np.full((L, H), np.nan)
    for ls in range(first):
        for hs in range(H):
            logits = path_patch(model, clean_cache, corrupted_cache, clean_ids, (ls, hs), receivers, inputs)
            out[ls, hs] = metric(logits)
    return out


def direct_effects(model, clean_ids, corrupted_ids, metric: Metric) -> np.ndarray:
    """Path patching head -> logits for every head: (L, H), the metric with only that head's direct path corrupted."""
    return path_patch_senders(model, clean_ids, corrupted_ids, ["logits"], metric)


def senders_by_input(model, clean_ids, corrupted_ids, receiver: tuple, metric: Metric,
                     inputs: Optional[str] = None) -> dict:
    """``{"q": (L, H), "k": (L, H), "v": (L, H)}``: senders' effect via each input of one receiver head.

    ``inputs`` picks some of them (e.g. ``"q"``); None, the default, all three.
    """
    inputs = "qkv" if inputs is None else inputs
    _check_inputs(inputs)
    return {k: path_patch_senders(model, clean_ids, corrupted_ids, [receiver], metric, k) for k in inputs}
