"""The shared mechanics every stage is built from, each with its hand-written backward.

Every operation is a pair of plain functions, side by side:

    y, cache = op_forward(x, params...)      # cache holds exactly what backward needs
    dx, grads... = op_backward(dy, cache)    # gradients of the loss w.r.t. the inputs

Nothing is stored on objects, so a student can call any forward on a toy array,
read its cache, and check its backward with `minitransformer.kit.gradcheck`.

Dimension letters used in shape comments throughout the package:

    B  batch size              T  sequence length (time)
    C  model width (d_model)   H  query heads,  G  key/value heads (groups)
    D  head width (d_head)     F  feed-forward hidden width
    V  vocabulary size         N  B*T, rows of a flattened batch

Numbers: float32 everywhere except gradient checks (float64). A float64 scalar
silently promotes a float32 array (``x / np.sqrt(d)`` is float64), so scales are
Python floats and every function returns the dtype it was given.

Where a fast backward hides its formula behind in-place arithmetic or algebra,
a ``_reference`` twin beside it states the formula plainly and is tested equal
(`gelu_backward_reference`, `softmax_backward_reference`).

Deliberately left out: autograd. The chain rule is written out by hand, one
function at a time, which is the point.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Optional

import numpy as np

from . import activations
from .blocks import row_blocks

# --------------------------------------------------------------------------- inference and training modes
# note: context variables, not module globals: each thread has its own modes, so a thread that
# generates under no_grad while another trains cannot leave its mode behind in the other's, and
# `core.cores.run` hands the caller's modes to the shard threads it starts.
_GRAD = {"enabled": contextvars.ContextVar("grad_enabled", default=True),
         "lean": contextvars.ContextVar("lean_caches", default=False)}


@contextlib.contextmanager
def _mode(key: str, value: bool):
    token = _GRAD[key].set(value)
    try:
        yield
    finally:
        _GRAD[key].reset(token)


def no_grad():
    """Inside this block forwards keep no caches (``need_cache`` defaults to False).

    >>> with no_grad():
    ...     grad_enabled()
    False
    """
    return _mode("enabled", False)


def lean_caches():
    """Inside this block caches keep only what backward needs: an activation that backward
    recomputes (attention's whole (B, H, T, S) pattern) is left out. `GPT.loss` trains so."""
    return _mode("lean", True)


def grad_enabled() -> bool:
    return _GRAD["enabled"].get()


def lean() -> bool:  # inside `lean_caches`?
    return _GRAD["lean"].get()


def require_cache(cache) -> None:
    """Raise the error a backward gives when its forward kept no cache."""
    if cache is None:
        raise ValueError("backward needs the cache of forward, but it is None: run forward with "
                         "need_cache=True (and outside nn.no_grad())")


def want_cache(need_cache: Optional[bool]) -> bool:
    """Resolve a ``need_cache`` argument: None means "unless inside `no_grad`"."""
    return grad_enabled() if need_cache is None else need_cache


# --------------------------------------------------------------------------- linear
def linear_forward(x: np.ndarray, W: np.ndarray, b: Optional[np.ndarray] = None):
    """``y = x @ W + b``. W is stored (in, out) so the product reads left to right.

    Shapes: x (..., I), W (I, O), b (O,) -> y (..., O).
    note: the leading dims are flattened to one 2-D product (N, I) @ (I, O), the
    shape numpy's BLAS spreads over both cores.
    """
    y = x.reshape(-1, x.shape[-1]) @ W  # (N, I) @ (I, O) -> (N, O)
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], W.shape[1]), x


def linear_backward(dy: np.ndarray, x: np.ndarray, W: np.ndarray, has_bias: bool = False):
    """Backward of `linear_forward` (cache = x). Returns ``(dx, dW, db)``; db is None without bias."""
    dy2 = dy.reshape(-1, dy.shape[-1])  # (N, O)
    x2 = x.reshape(-1, x.shape[-1])  # (N, I)
    dW = x2.T @ dy2  # (I, N) @ (N, O) -> (I, O)
    dx = (dy2 @ W.T).reshape(x.shape)  # (N, O) @ (O, I) -> (..., I)
    db = np.ones(len(dy2), dy2.dtype) @ dy2 if has_bias else None  # (O,), the column sums as one BLAS product
    return dx, dW, db


# --------------------------------------------------------------------------- norms
def layernorm_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5):
    """LayerNorm over the last axis (Ba, Kiros & Hinton, 2016): normalise, then scale and shift.

    Shapes: x (..., C), gamma (C,), beta (C,) -> y (..., C).
    note: the cache keeps x (the model keeps it anyway: the residual stream), the mean and
    1/std, not xhat: backward recomputes xhat, one pass over x for a (..., C) array saved.
    """
    inv_C = 1.0 / x.shape[-1]
    # note: ufuncs called directly and the (..., 1) statistics updated in place: one new token
    # (decoding) costs a microsecond per numpy call, and this is called twice per layer
    mean = np.add.reduce(x, axis=-1, keepdims=True)  # (..., 1)
    mean *= inv_C
    y = np.subtract(x, mean)  # (..., C), centred; becomes y in place
    rstd = _row_dot(y, y)  # (..., 1), the sum of squares, without a (..., C) square
    rstd *= inv_C
    rstd += eps
    np.sqrt(rstd, out=rstd)
    np.divide(1.0, rstd, out=rstd)  # 1 / sqrt(var + eps)
    y *= rstd  # xhat
    y *= gamma
    return np.add(y, beta, out=y), (x, mean, rstd, gamma)


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (..., C) x2 -> (..., 1), no temporary; vecdot: numpy 2
    return (np.vecdot(a, b) if hasattr(np, "vecdot") else np.einsum("...c,...c->...", a, b))[..., None]


def normalized(x: np.ndarray, mean, rstd: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """xhat = (x - mean) * rstd, recomputed in backward (mean None: RMSNorm), into ``out`` if given."""
    if mean is None:  # RMSNorm
        return np.multiply(x, rstd, out=out)
    xhat = np.subtract(x, mean, out=out)  # (..., C)
    xhat *= rstd
    return xhat


def layernorm_backward(dy: np.ndarray, cache):
    """Backward of `layernorm_forward`. Returns ``(dx, dgamma, dbeta)``.

    With g = dy * gamma, the gradient through the normalisation is
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))``: the two means remove
    the directions that the mean subtraction and the scaling took away.

    note: block by block (`row_blocks`): the dozen passes run on rows that stay in the L2
    cache; dgamma and dbeta add up the blocks' column sums.
    """
    x, mean, rstd, gamma = cache
    C = dy.shape[-1]
    x2, dy2 = x.reshape(-1, C), dy.reshape(-1, C)  # (N, C)
    mean2, rstd2 = mean.reshape(-1, 1), rstd.reshape(-1, 1)  # (N, 1)
    dx = np.empty(dy2.shape, np.result_type(dy, x, gamma))  # (N, C)
    dgamma, dbeta = np.zeros(C, dx.dtype), np.zeros(C, dx.dtype)  # (C,)
    blocks = row_blocks(*x2.shape)
    scratch = np.empty_like(dx[blocks[0]])
    for r in blocks:
        xhat = normalized(x2[r], mean2[r], rstd2[r], out=scratch[:len(x2[r])])  # (n, C), recomputed
        g = np.multiply(dy2[r], xhat, out=dx[r])  # scratch: first for dgamma, then g = dy * gamma
        dgamma += np.add.reduce(g, axis=0)
        dbeta += np.add.reduce(dy2[r], axis=0)
        np.multiply(dy2[r], gamma, out=g)
        g_mean = np.add.reduce(g, axis=-1, keepdims=True)  # (n, 1), C * mean(g)
        g_mean *= 1.0 / C
        gx_mean = _row_dot(g, xhat)  # (n, 1), C * mean(g * xhat)
        gx_mean *= 1.0 / C
        # dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), in place
        xhat *= gx_mean
        g -= xhat
        g -= g_mean
        g *= rstd2[r]
    return dx.reshape(dy.shape), dgamma, dbeta


def rmsnorm_forward(x: np.ndarray, gamma: np.ndarray, eps: float = 1e-6):
    """RMSNorm (Zhang & Sennrich, 2019): LayerNorm without the mean subtraction and the shift.

    Shapes: x (..., C), gamma (C,) -> y (..., C). Like `layernorm_forward`, the cache keeps x
    and 1/rms, and backward recomputes the normalised x.
    """
    ms = _row_dot(x, x) / x.shape[-1]  # (..., 1), mean of squares
    rstd = 1.0 / np.sqrt(ms + eps)  # (..., 1)
    y = x * rstd  # (..., C)
    y *= gamma
    return y, (x, None, rstd, gamma)


def rmsnorm_backward(dy: np.ndarray, cache):
    """Backward of `rmsnorm_forward`. Returns ``(dx, dgamma)``."""
    x, _, rstd, gamma = cache
    xhat = normalized(x, None, rstd)  # (..., C)
    g = dy * xhat  # (..., C), scratch: first for dgamma, then g = dy * gamma
    dgamma = g.sum(axis=tuple(range(dy.ndim - 1)))  # (C,)
    np.multiply(dy, gamma, out=g)
    gx_mean = _row_dot(g, xhat) / dy.shape[-1]  # (..., 1)
    xhat *= gx_mean
    g -= xhat
    return np.multiply(g, rstd, out=g), dgamma  # rstd * (g - xhat * mean(g * xhat))


# --------------------------------------------------------------------------- activations
# GELU (forward, backward, its reference, and the forward that keeps the derivative) lives in
# `core.activations`; its names are offered here with the other operations.
gelu, gelu_forward, gelu_backward = activations.gelu, activations.gelu_forward, activations.gelu_backward
gelu_forward_with_grad, gelu_backward_reference = activations.gelu_forward_with_grad, activations.gelu_backward_reference


# --------------------------------------------------------------------------- the configured norm
def norm_forward(config, p, x):
    """The configured norm (LayerNorm or RMSNorm) of ``x`` (B, T, C) with gains ``p``: ``(y, cache)``."""
    if config.norm == "layernorm":
        return layernorm_forward(x, p["w"], p["b"], config.norm_eps)
    return rmsnorm_forward(x, p["w"], config.norm_eps)


def norm_backward(config, cache, dy):
    """Backward of `norm_forward`: ``(dx, {"w": dw[, "b": db]})``."""
    if config.norm == "layernorm":
        dx, dw, db = layernorm_backward(dy, cache)
        return dx, {"w": dw, "b": db}
    dx, dw = rmsnorm_backward(dy, cache)
    return dx, {"w": dw}


def silu_forward(x: np.ndarray):
    """SiLU / swish: ``x * sigmoid(x)`` (used by SwiGLU)."""
    s = sigmoid(x)
    return x * s, (x, s)


def silu_backward(dy: np.ndarray, cache) -> np.ndarray:
    x, s = cache
    return dy * s * (1.0 + x * (1.0 - s))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function (no overflow warning for large |x|)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


# --------------------------------------------------------------------------- softmax and loss
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax: subtracting the max changes nothing mathematically and
    keeps ``exp`` from overflowing.

    >>> softmax(np.array([1000.0, 1000.0]))
    array([0.5, 0.5])
    """
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(dp: np.ndarray, p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Backward of softmax given its output p: ``dx = p * (dp - sum(dp * p))``."""
    return p * (dp - (dp * p).sum(axis=axis, keepdims=True))


def softmax_backward_reference(dp: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The reference for `softmax_backward` (last axis): the Jacobian, built and applied.

    For p = softmax(x), ∂p_i/∂x_j = p_i (δ_ij - p_j), so J = diag(p) - p pᵀ (symmetric) and
    dx = Jᵀ dp. Multiplying out gives `softmax_backward`'s ``p * (dp - sum(dp * p))``, which
    never builds the (..., K, K) matrix; this one does, to show where that formula comes from.

        >>> p = softmax(np.array([0.0, 1.0, 2.0]))
        >>> dp = np.array([1.0, -1.0, 0.5])
        >>> bool(np.allclose(softmax_backward_reference(dp, p), softmax_backward(dp, p)))
        True
    """
    eye = np.eye(p.shape[-1], dtype=p.dtype)  # (K, K)
    jacobian = p[..., :, None] * (eye - p[..., None, :])  # (..., K, K): J[i, j] = p_i (δ_ij - p_j)
    return np.einsum("...ij,...i->...j", jacobian, dp)  # dx_j = Σ_i dp_i J[i, j]


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``log(softmax(x))`` without forming the softmax (stable for very negative logits)."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray, ignore_index: int = -100):
    """Mean negative log-likelihood of ``targets`` under ``softmax(logits)``.

    Shapes: logits (..., V) float, targets (...) int -> scalar loss (a Python float).
    Positions whose target is ``ignore_index`` (padding) are left out of the mean; if every one
    is, the loss is 0.0 and its gradient zero (a shard of padding adds nothing to a batch's sum).

    Raises:
        TypeError: if the targets are not integer ids.
        ValueError: if a target is outside ``0..V-1`` and not ``ignore_index``.
    """
    V = logits.shape[-1]
    flat = logits.reshape(-1, V)  # (N, V)
    t = np.asarray(targets).reshape(-1)  # (N,)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets must be integer token ids, got dtype {t.dtype}; pass an int array (ids shifted "
                        "by one position)")
    if flat.shape[0] != t.shape[0]:
        raise ValueError(f"targets have shape {np.shape(targets)}, logits {logits.shape}: they must match on all but the last axis")
    keep = t != ignore_index
    bad = keep & ((t < 0) | (t >= V))
    if bad.any():
        raise ValueError(f"target id {int(t[bad][0])} is outside the vocabulary 0..{V - 1} (and is not ignore_index={ignore_index})")
    if not np.issubdtype(flat.dtype, np.floating):
        flat = flat.astype(np.float64)
    # note: one sweep, block by block (`row_blocks`): e = exp(logits - row max) and each row's sum.
    # The loss is log(sum) + max - logit of the target; backward needs only e / sum (the softmax).
    e = np.empty_like(flat)  # (N, V)
    sums, lse = np.empty((flat.shape[0], 1), flat.dtype), np.empty((flat.shape[0], 1), flat.dtype)  # (N, 1)
    ones = np.ones((V, 1), flat.dtype)
    for r in row_blocks(*flat.shape):
        row_max = np.fmax.reduce(flat[r], axis=-1, keepdims=True)  # (n, 1)
        np.exp(np.subtract(flat[r], row_max, out=e[r]), out=e[r])
        np.matmul(e[r], ones, out=sums[r])  # (n, 1): the row sums, as a matmul with ones
        np.add(np.log(sums[r]), row_max, out=lse[r])  # log-sum-exp of each row
    rows = np.nonzero(keep)[0]
    count = max(len(rows), 1)
    loss = float(np.sum(lse[rows, 0] - flat[rows, t[rows]], dtype=np.float64)) / count
    return loss, (e, sums, t, keep, count, logits.shape)


def cross_entropy_backward(cache, dloss: float = 1.0, overwrite: bool = False) -> np.ndarray:
    """Gradient of the mean loss w.r.t. the logits: ``(softmax - onehot) / count`` on kept rows.

    ``overwrite=True`` writes it over the cache's (N, V) exponentials (the model does: no second array).
    """
    e, sums, t, keep, count, shape = cache
    dlogits, scale = e if overwrite else np.empty_like(e), dloss / count  # (N, V)
    np.multiply(e, scale / sums, out=dlogits)  # softmax = e / rowsum(e), divided by count: one pass
    rows = np.nonzero(keep)[0]
    dlogits[rows, t[rows]] -= scale  # minus the one-hot targets
    dlogits[~keep] = 0.0
    return dlogits.reshape(shape)


# --------------------------------------------------------------------------- dropout
def dropout_forward(x: np.ndarray, p: float, rng: Optional[np.random.Generator], train: bool = True):
    """Inverted dropout: zero each element with probability ``p``, scale the rest by ``1/(1-p)``.

    The generator is explicit, so the same seed drops the same elements. With
    ``train=False`` or ``p == 0`` it is the identity (cache None).
    """
    if not train or p == 0.0:
        return x, None
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if rng is None:
        raise ValueError("dropout needs an explicit np.random.Generator (rng=np.random.default_rng(seed))")
    mask = (rng.random(x.shape, dtype=np.float32) >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


def dropout_backward(dy: np.ndarray, mask) -> np.ndarray:
    return dy if mask is None else dy * mask
