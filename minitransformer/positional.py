"""Stage 3, positional encoding (IR concept: indexing): give every position an address.

Attention compares vectors without looking at where they stand, so "dog bites
man" and "man bites dog" would look the same. Four variants, chosen by
``config.positional``:

    "learned"     y = x + W_pos[positions]   a trainable row per position (GPT-2)
    "sinusoidal"  y = x + PE[positions]      a fixed code of sines and cosines (Vaswani et al.)
    "rope"        y = x                      q and k are rotated inside attention (Su et al.)
    "none"        y = x                      no positions at all (a baseline to compare with)

Sinusoidal codes and RoPE use the same frequencies ``theta_i = base^(-2i/d)``:
each pair of dimensions is a clock hand turning at its own speed, fast in the
first pairs and slow in the last, the way binary digits flip at different rates
(`binary_positions`, after d2l.ai §11.6).

    >>> sinusoidal_table(2, 4)
    array([[0.        , 1.        , 0.        , 1.        ],
           [0.84147096, 0.5403023 , 0.00999983, 0.99995   ]], dtype=float32)
    >>> cos, sin = rope_angles(np.array([1]), d_head=2)
    >>> rope_apply(np.array([[1.0, 0.0]], dtype=np.float32), cos, sin, "half")  # [cos 1, sin 1]
    array([[0.5403023 , 0.84147096]], dtype=float32)

Dimension letters: B batch, T sequence length, C model width (d_model),
D head width (d_head), P number of positions in a table.

Deliberately left out: ALiBi and other attention biases, NTK/YaRN scaling of
the RoPE base for longer contexts, partial RoPE (rotating only part of a head),
and any precomputed table kept between calls (a (T, C) table is cheap to build).

References: Vaswani et al. 2017, "Attention Is All You Need" §3.5;
Radford et al. 2019 (GPT-2, learned positions); Su et al. 2021, "RoFormer:
Enhanced Transformer with Rotary Position Embedding" §3.4.
"""

from __future__ import annotations

import numpy as np

from .core import nn
from .core.config import ROPE_STYLES

VARIANTS = ("learned", "sinusoidal", "rope", "none")  # what these functions compute; registered by these names


# --------------------------------------------------------------------------- shared frequencies
def _angles(positions: np.ndarray, width: int, base: float) -> np.ndarray:
    """``angle[t, i] = positions[t] * base^(-2i/width)``, in float64. Shapes: (T,) -> (T, width // 2)."""
    # subtle: computed in float64 and rounded once at the end; in float32 the product
    # p * theta at p ~ 10^4 is off by ~1e-3 rad, visibly wrong after sin/cos.
    theta = float(base) ** (-np.arange(0, width, 2, dtype=np.float64) / width)  # (width // 2,)
    return np.asarray(positions, dtype=np.float64)[:, None] * theta[None, :]  # (T, 1) * (1, W/2) -> (T, W/2)


def _sinusoidal_rows(positions: np.ndarray, d_model: int, base: float = 10000.0) -> np.ndarray:
    angle = _angles(positions, d_model, base)  # (T, C/2)
    pe = np.empty((angle.shape[0], d_model), dtype=np.float32)  # (T, C)
    pe[:, 0::2] = np.sin(angle)  # even dims: sin, as in the paper
    pe[:, 1::2] = np.cos(angle)  # odd dims: cos of the same angle
    return pe


def sinusoidal_table(n_positions: int, d_model: int, base: float = 10000.0) -> np.ndarray:
    """The fixed code of Vaswani et al.: ``PE[p, 2i] = sin(p / base^(2i/d))``, ``PE[p, 2i+1] = cos(...)``.

    Returns a (P, C) float32 array; row p is the vector added at position p.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding pairs sin and cos, so d_model={d_model} must be even")
    return _sinusoidal_rows(np.arange(n_positions), d_model, base)


def binary_positions(n_positions: int, n_bits: int) -> np.ndarray:
    """The binary digits of 0..P-1, least significant first: column 0 flips every step, column 1
    every two, ... the discrete cousin of the sinusoidal table's fast-to-slow columns.

    >>> binary_positions(4, 3)
    array([[0, 0, 0],
           [1, 0, 0],
           [0, 1, 0],
           [1, 1, 0]])
    """
    if n_positions > 2 ** n_bits:
        raise ValueError(f"{n_bits} bits count only up to {2 ** n_bits - 1}; use n_bits >= {max(n_positions - 1, 1).bit_length()}")
    return (np.arange(n_positions)[:, None] >> np.arange(n_bits)[None, :]) & 1  # (P, 1) >> (1, n_bits) -> (P, n_bits)


# --------------------------------------------------------------------------- RoPE
def rope_angles(positions, d_head: int, base: float = 10000.0):
    """Cosines and sines of ``p * theta_i``, ``theta_i = base^(-2i/D)`` (RoFormer eq. 15).

    Args:
        positions: (T,) int absolute positions (``start_pos + arange(T)`` with a KV cache).
        d_head: D, the head width; must be even (dimensions are rotated in pairs).
    Returns:
        ``(cos, sin)``, each (T, D/2) float32: column i is the angle of pair i.
    """
    positions = np.asarray(positions)
    if positions.ndim != 1:
        raise ValueError(f"positions must be a 1-D array (T,), got shape {positions.shape}")
    if d_head % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions, so d_head={d_head} must be even")
    angle = _angles(positions, d_head, base)  # (T, D/2)
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def rope_apply(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, style: str) -> np.ndarray:
    """Rotate each pair of dimensions of x by its angle: ``(a, b) -> (a cos - b sin, a sin + b cos)``.

    Args:
        x: (..., T, D) queries or keys, e.g. (B, H, T, D).
        cos, sin: (T, D/2) from `rope_angles`.
        style: which dimensions form pair i. ``"interleaved"``: (2i, 2i+1), as in the
            paper and Meta's LLaMA code; ``"half"``: (i, i + D/2), as in GPT-NeoX and
            HF's ``rotate_half``. The same rotation up to a permutation of the D dims.
    Returns:
        A rotated copy of x, same shape and dtype.
    """
    if style not in ROPE_STYLES:
        raise ValueError(f"rope style {style!r} is not valid; choose one of {', '.join(map(repr, ROPE_STYLES))}")
    if x.ndim < 2 or x.shape[-2:] != (cos.shape[0], 2 * cos.shape[1]) or sin.shape != cos.shape:
        raise ValueError(
            f"rope_apply needs x (..., T, D) with cos and sin (T, D/2); got x {x.shape}, cos {cos.shape}, "
            f"sin {sin.shape}: build them with rope_angles(positions, d_head) for the same T and D"
        )
    # note: cast the tables to x's dtype, so float32 stays float32 and float64 (gradcheck) stays float64.
    cos, sin = cos.astype(x.dtype, copy=False), sin.astype(x.dtype, copy=False)
    half = x.shape[-1] // 2
    if style == "half":
        a, b = x[..., :half], x[..., half:]  # (..., T, D) -> 2 x (..., T, D/2)
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)  # -> (..., T, D)
    a, b = x[..., 0::2], x[..., 1::2]  # (..., T, D) -> 2 x (..., T, D/2), strided views
    y = np.empty_like(x)  # (..., T, D)
    y[..., 0::2] = a * cos - b * sin
    y[..., 1::2] = a * sin + b * cos
    return y


def rope_backward(dy: np.ndarray, cos: np.ndarray, sin: np.ndarray, style: str) -> np.ndarray:
    """Gradient of `rope_apply` w.r.t. x. Shapes: dy (..., T, D) -> dx (..., T, D).

    A rotation R is orthogonal, so the gradient through it is ``R^T dy = R^{-1} dy``:
    the same rotation by the negative angle, i.e. the same code with sin negated.
    """
    return rope_apply(dy, cos, -sin, style)


def rope_rotate(x: np.ndarray, positions, config) -> np.ndarray:
    """RoPE as attention asks for it: rotate queries or keys ``x`` (..., T, d) to ``positions`` (T,).

    ``d`` is whatever width attention rotates (a head, or MLA's decoupled channel);
    the base and the pairing come from ``config.rope_base`` and ``config.rope_style``.
    """
    cos, sin = rope_angles(positions, x.shape[-1], config.rope_base)  # (T, d/2) each
    return rope_apply(x, cos, sin, config.rope_style)


def rope_rotate_backward(dy: np.ndarray, positions, config) -> np.ndarray:
    """The gradient through `rope_rotate`: the inverse rotation (a rotation's transpose)."""
    cos, sin = rope_angles(positions, dy.shape[-1], config.rope_base)
    return rope_backward(dy, cos, sin, config.rope_style)


# --------------------------------------------------------------------------- the stage
def init(config, rng: np.random.Generator) -> dict:
    """``{"W_pos": (context_length, C) ~ N(0, init_std)}`` for "learned"; ``{}`` otherwise (nothing to train)."""
    _check_variant(config.positional)
    if config.positional != "learned":
        return {}
    W_pos = rng.normal(0.0, config.init_std, size=(config.context_length, config.d_model))  # (T_max, C)
    return {"W_pos": W_pos.astype(np.float32)}


def forward(params: dict, x: np.ndarray, positions, config, need_cache=None):
    """Add the position vectors to x (or pass it through for "rope" and "none").

    Args:
        x: (B, T, C) float token embeddings.
        positions: (T,) int absolute positions, ``start_pos + arange(T)`` when decoding.
        need_cache: keep a cache for backward (None: unless inside `nn.no_grad`).
    Returns:
        ``(y, cache)``: y (B, T, C), same dtype as x; cache ``{"positions", "hook_pos_embed"}``
        (the (T, C) vectors added; None for "rope"/"none"), or None when not needed.
    """
    _check_variant(config.positional)
    if x.ndim != 3 or x.shape[-1] != config.d_model:
        raise ValueError(f"x must have shape (B, T, C) with C = d_model = {config.d_model}, got {x.shape}")
    if x.dtype.kind != "f":
        raise ValueError(f"x must be a float array (float32 in training), got {x.dtype}: embed the token ids first")
    positions = np.asarray(positions)
    if positions.shape != (x.shape[1],) or positions.dtype.kind not in "iu":
        raise ValueError(f"positions must be a (T,) = ({x.shape[1]},) int array, got {positions.dtype} {positions.shape}")
    pos_embed = None
    if config.positional in ("learned", "sinusoidal"):
        _check_range(positions, config.context_length)
        if config.positional == "learned":
            pos_embed = params["W_pos"][positions].astype(x.dtype, copy=False)  # (T_max, C)[(T,)] -> (T, C)
        else:
            pos_embed = _sinusoidal_rows(positions, config.d_model).astype(x.dtype, copy=False)  # (T, C)
        y = x + pos_embed  # (B, T, C) + (T, C) -> (B, T, C), broadcast over the batch
    else:
        y = x  # note: RoPE acts on q and k inside attention; the residual stream is untouched
    cache = {"positions": positions, "hook_pos_embed": pos_embed} if nn.want_cache(need_cache) else None
    return y, cache


def backward(params: dict, cache, dy: np.ndarray):
    """Backward of `forward`. Returns ``(dx, grads)``; grads has the keys of params.

    The stage is an addition, so dx is dy unchanged. Each row of ``W_pos`` that was
    used receives dy summed over the batch; unused rows get zero.
    """
    if cache is None:
        raise ValueError("backward needs the cache from forward; run forward with need_cache=True, outside nn.no_grad()")
    if "W_pos" not in params:
        return dy, {}
    positions = cache["positions"]
    if np.unique(positions).size != positions.size:
        raise ValueError("learned positions must be distinct within a call (start_pos + arange(T)); use np.add.at for repeats")
    dW_pos = np.zeros_like(params["W_pos"])  # (T_max, C)
    # subtle: plain fancy assignment is only right because the positions are distinct;
    # with a repeated position the last write would win instead of the sum.
    dW_pos[positions] = dy.sum(axis=0)  # (B, T, C) -> (T, C), into rows `positions`
    return dy, {"W_pos": dW_pos}


def _check_variant(name: str) -> None:
    if name not in VARIANTS:
        raise ValueError(f"positional={name!r} is not valid; choose one of {', '.join(map(repr, VARIANTS))}")


def _check_range(positions: np.ndarray, context_length: int) -> None:
    # note: "sinusoidal" could compute any row, but refuses like "learned" so that both
    # variants accept exactly the same inputs and a comparison between them is fair.
    if positions.size and (positions.min() < 0 or positions.max() >= context_length):
        bad = int(positions.min()) if positions.min() < 0 else int(positions.max())
        raise ValueError(
            f"position {bad} is outside 0..{context_length - 1} (context_length={context_length}); "
            f"crop the prompt to its last {context_length} tokens or raise context_length in the config"
        )
