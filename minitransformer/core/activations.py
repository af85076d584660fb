"""GELU, the MLP's non-linearity, with its hand-written backward (re-exported by `core.nn`).

GPT-2's GELU is the tanh approximation (Hendrycks & Gimpel, 2016):

    gelu(x)  = 0.5 x (1 + t),    t = tanh(u),    u = sqrt(2/pi) (x + 0.044715 x³)
    gelu'(x) = 0.5 (1 + t)  +  0.5 x (1 - t²) sqrt(2/pi) (1 + 3·0.044715 x²)

`gelu` computes the value alone (nothing kept). Three ways to pay for the derivative,
one per situation:

- `gelu_forward` keeps ``(x, t)``; `gelu_backward` reuses t (or recomputes it from x when the
  caller kept ``(x, None)`` to save memory);
- `gelu_forward_with_grad` computes gelu'(x) during the forward and keeps only that array:
  backward is then one multiplication, ``dy * gelu'(x)``. Training uses it (inside
  `nn.lean_caches`): the same memory as keeping x, and fewer passes over memory in all;
- `gelu_backward_reference` writes the derivative as one formula (tested equal to both).
"""

from __future__ import annotations

import math

import numpy as np

from .blocks import row_blocks

_GELU_C = math.sqrt(2.0 / math.pi)


def _tanh_inner(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``tanh(sqrt(2/pi) (x + 0.044715 x^3))`` into ``out``."""
    np.multiply(x, x, out=out)
    out *= 0.044715
    out += 1.0  # 1 + 0.044715 x²
    out *= x
    out *= _GELU_C
    return np.tanh(out, out=out)


def gelu_forward(x: np.ndarray):
    """GELU, tanh approximation as in GPT-2 (Hendrycks & Gimpel, 2016):
    ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``.

    Returns ``(y, (x, t))`` with t the tanh, which `gelu_backward` reuses; a caller short
    of memory may keep ``(x, None)`` instead, and backward recomputes t (`mlp` does).
    """
    x2 = x.reshape(-1, x.shape[-1])  # (N, F)
    y, t = np.empty_like(x2), np.empty_like(x2)
    for r in row_blocks(*x2.shape):  # each block's chain stays in cache
        yb = np.add(_tanh_inner(x2[r], out=t[r]), 1.0, out=y[r])
        yb *= x2[r]
        yb *= 0.5
    return y.reshape(x.shape), (x, t.reshape(x.shape))


def gelu_backward(dy: np.ndarray, cache) -> np.ndarray:
    """``dy * gelu'(x)`` with ``gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t²) sqrt(2/pi) (1 + 3·0.044715 x²)``.

    ``cache`` is ``(x, t)`` from `gelu_forward`, or ``(x, None)``: then t is recomputed.
    note: in place, block by block (`row_blocks`); the one-line expression
    (`gelu_backward_reference`) makes ten full-size arrays, which costs more than the maths.
    """
    x, t = cache
    x2, dy2 = x.reshape(-1, x.shape[-1]), dy.reshape(-1, x.shape[-1])  # (N, F)
    t2 = None if t is None else t.reshape(x2.shape)
    out = np.empty(x2.shape, np.result_type(x, dy))
    blocks = row_blocks(*x2.shape)
    scratch_t, scratch_b = (np.empty_like(x2[blocks[0]]) for _ in "tb")  # one block each
    for r in blocks:
        xb = x2[r]
        tb = _tanh_inner(xb, out=scratch_t[:len(xb)]) if t2 is None else t2[r]
        a = np.multiply(xb, xb, out=out[r])
        a *= 3 * 0.044715 * _GELU_C
        a += _GELU_C  # d(inner)/dx
        b = np.multiply(tb, tb, out=scratch_b[:len(xb)])
        np.subtract(1.0, b, out=b)  # 1 - t², the derivative of tanh
        a *= b
        a *= xb
        a += tb
        a += 1.0
        a *= 0.5  # 0.5 (1 + t) + 0.5 x (1 - t²) d(inner)/dx
        a *= dy2[r]
    return out.reshape(x.shape)


def gelu_backward_reference(dy: np.ndarray, cache) -> np.ndarray:
    """The reference for `gelu_backward`: the derivative written as one formula.

    With u = sqrt(2/pi) (x + 0.044715 x³) and t = tanh(u), gelu(x) = 0.5 x (1 + t), so by
    the product and chain rules (tanh' = 1 - tanh²):

        gelu'(x) = 0.5 (1 + t)  +  0.5 x · (1 - t²) · sqrt(2/pi) (1 + 3·0.044715 x²)

    Same arguments and result as `gelu_backward` (tested equal); slower, as it builds
    every term as a full-size array.
    """
    x, t = cache
    if t is None:
        t = np.tanh(_GELU_C * (x + 0.044715 * x * x * x))
    du_dx = _GELU_C * (1.0 + 3 * 0.044715 * x * x)  # (..., F)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


def gelu(x: np.ndarray) -> np.ndarray:
    """``gelu(x)`` alone, for a forward that keeps nothing (inference, or a cache that keeps x).

    note: in place on one new array, whole (no blocks): when decoding one token the array is a
    single row and every numpy call counts. The same operations as `gelu_forward`'s.
    """
    y = _tanh_inner(x, out=np.empty_like(x))  # t
    y += 1.0
    y *= x
    y *= 0.5  # 0.5 x (1 + t)
    return y


def gelu_forward_with_grad(x: np.ndarray):
    """``(gelu(x), gelu'(x))``, both x's shape: the forward that training runs (`mlp`, lean caches).

    note: with a = 0.5 (1 + t) the two are y = x·a and gelu'(x) = a (1 + x (1 - t) sqrt(2/pi)
    (1 + 3·0.044715 x²)) (since 1 - t² = (1 - t)(1 + t)), computed block by block
    (`row_blocks`) in one sweep; backward then costs one pass, ``dy * gelu'(x)``.
    """
    x2 = x.reshape(-1, x.shape[-1])  # (N, F)
    y, d = np.empty_like(x2), np.empty_like(x2)
    blocks = row_blocks(*x2.shape)
    sq, t = (np.empty_like(x2[blocks[0]]) for _ in "st")  # scratch, one block each
    for r in blocks:
        xb = x2[r]
        n = len(xb)
        s = np.multiply(xb, xb, out=sq[:n])  # x²
        tb = np.multiply(s, 0.044715 * _GELU_C, out=t[:n])
        tb += _GELU_C
        tb *= xb
        np.tanh(tb, out=tb)  # t = tanh(sqrt(2/pi) (x + 0.044715 x³))
        a = np.multiply(tb, 0.5, out=y[r])
        a += 0.5  # a = 0.5 (1 + t), for now in y's block
        np.subtract(1.0, tb, out=tb)  # 1 - t
        s *= 3 * 0.044715 * _GELU_C
        s += _GELU_C  # sqrt(2/pi) (1 + 3·0.044715 x²)
        s *= xb
        s *= tb
        s += 1.0
        np.multiply(s, a, out=d[r])  # gelu'(x)
        a *= xb  # y = x · a
    return y.reshape(x.shape), d.reshape(x.shape)
