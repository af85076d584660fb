"""The attention core, block by block: what `mha` runs when nothing needs the whole pattern.

    scores  = q @ k.T (+ mask)      pattern = softmax(scores)      z = pattern @ v

computed for a few (batch, group) slabs and a band of query rows at a time, the way
FlashAttention (Dao et al., 2022) tiles it, with two consequences:

- Each block's scores and pattern are small enough to stay in the L2 cache while the
  softmax makes its passes over them, and they are dropped once z is computed: training
  keeps no (B, H, T, S) pattern; `attend_backward` recomputes each block's pattern with the
  same operations, so it sees the same numbers.
- A causal mask hides every key after a query's position. A band of queries ending at
  position p needs only the keys up to p, so the blocks above the diagonal, all masked,
  are never computed. With 4 bands, 10 of the 16 (band, key band) tiles are left: 5/8 of
  the square's work, in forward and backward alike.

        keys ->                     band 0 reads keys [0, S0)
      q  [x . . .]                  band 1 reads keys [0, S1)
      u  [x x . .]                  ...
      e  [x x x .]                  the last band reads all S keys
      r  [x x x x]                  ('.' is never computed; the diagonal tiles get the mask)

Shapes: q (B, G, R·T, D) with the R query heads of a group one after another (see `mha`),
already scaled by 1/sqrt(D); kT (B, G, D, S); v (B, G, S, D); mask (T, S) or None; ``bands``
from `causal_bands` (or ``[(0, T, S)]``: one band that reads every key).
`mha` holds this equal to the plain formulas (tests/test_reference_paths.py).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.blocks import row_blocks

BAND = 32  # query rows per band (at least): small bands skip more of the masked half, tiny ones cost Python
BANDS = 4  # aim for this many bands per sequence (T = 128: bands of 32; T = 256: bands of 64)


def softmax_in_place(scores: np.ndarray, mask: Optional[np.ndarray]) -> None:
    """Softmax over the last axis of ``scores`` (N, T, S), in place, after adding ``mask`` (T, S) if given.

    note: cache blocking (see `core.blocks.row_blocks`): the mask add and the five passes of the
    softmax run on a few (T, S) slices at a time, which stay in the L2 cache, instead of
    streaming the whole (B, H, T, S) array through main memory six times.
    """
    N, T, S = scores.shape
    ones = np.ones((S, 1), scores.dtype)  # (S, 1)
    for r in row_blocks(N, T * S):
        blk = scores[r]  # (n, T, S), a view
        if mask is not None:
            blk += mask
        blk -= np.fmax.reduce(blk, axis=-1, keepdims=True)  # note: fmax skips numpy's NaN checks: faster than max
        np.exp(blk, out=blk)
        blk *= 1.0 / (blk @ ones)  # (n, T, 1): each row's sum, as a matmul with ones (faster than .sum here)


def causal_bands(positions: np.ndarray, key_positions: np.ndarray) -> list[tuple[int, int, int]]:
    """``[(a, b, s)]``: query rows ``a:b`` see only the first ``s`` keys (the rest are in their future).

    ``positions`` (T,) of the queries, ``key_positions`` (S,) consecutive. With T queries at the
    end of S keys (training: S = T) the bands have about T / `BANDS` rows, at least `BAND`;
    a short T is one band.
    """
    T, S = len(positions), len(key_positions)
    size = max(BAND, -(-T // BANDS))
    visible = np.clip(np.asarray(positions) - key_positions[0] + 1, 0, S)  # (T,) keys each query may read
    return [(a, min(a + size, T), int(visible[a:a + size].max())) for a in range(0, T, size)]


def _tiles(n_slabs: int, R: int, bands: list) -> list:
    """``(slabs, a, b, s)`` tiles: each band's rows with as many slabs as keep its scores in the L2 cache."""
    return [(r, a, b, s) for a, b, s in bands for r in row_blocks(n_slabs, R * (b - a) * max(s, 1))]


def attend(q: np.ndarray, kT: np.ndarray, v: np.ndarray, mask: Optional[np.ndarray], bands: list) -> np.ndarray:
    """z = softmax(q @ kT + mask) @ v, tile by tile; q (B, G, R·T, D) -> z (B, G, R·T, D)."""
    B, G, RT, D = q.shape
    S, T = kT.shape[-1], bands[-1][1]
    R = RT // T
    q4, kT3, v3 = q.reshape(B * G, R, T, D), kT.reshape(B * G, D, S), v.reshape(B * G, S, D)
    z = np.empty((B * G, R, T, D), np.result_type(q, v))
    for r, a, b, s in _tiles(B * G, R, bands):
        if s == 0:  # no key is visible (a query before every key): nothing retrieved
            z[r, :, a:b] = 0.0
            continue
        p = q4[r, :, a:b] @ kT3[r, None, :, :s]  # (n, R, rows, D) @ (n, 1, D, s) -> (n, R, rows, s)
        softmax_in_place(p.reshape(-1, b - a, s), None if mask is None else mask[a:b, :s])
        z[r, :, a:b] = p @ v3[r, None, :s]  # (n, R, rows, s) @ (n, 1, s, D) -> (n, R, rows, D)
    return z.reshape(B, G, RT, D)


def attend_backward(q: np.ndarray, kT: np.ndarray, vT: np.ndarray, dz: np.ndarray, delta: np.ndarray,
                    mask: Optional[np.ndarray], bands: list):
    """Gradients of `attend` w.r.t. q, k and v: ``(dq (B, G, R·T, D), dk (B, G, S, D), dv (B, G, S, D))``.

    ``vT`` (B, G, D, S) is v transposed; ``dz`` (B, G, R·T, D) is the gradient of z; ``delta`` (B, G, R·T, 1) = rowsum(dz * z), which
    equals rowsum(dpattern * pattern) (FlashAttention's identity). Per tile: the pattern p is
    recomputed as `attend` computed it, then

        dv += p^T @ dz          dscores = p * (dz @ v^T - delta)
        dq  = dscores @ k       dk += dscores^T @ q

    summed over the R heads of a group for dk and dv (they share those keys and values).
    """
    B, G, RT, D = q.shape
    S, T = kT.shape[-1], bands[-1][1]
    R = RT // T
    BG = B * G
    q4, kT3, vT3 = q.reshape(BG, R, T, D), kT.reshape(BG, D, S), vT.reshape(BG, D, S)
    k3 = kT3.transpose(0, 2, 1)  # (BG, S, D), a view
    dz4, delta4 = dz.reshape(BG, R, T, D), delta.reshape(BG, R, T, 1)
    dtype = np.result_type(q, dz)
    dq = np.empty((BG, R, T, D), dtype)
    dk, dv = np.zeros((BG, S, D), dtype), np.zeros((BG, S, D), dtype)
    for r, a, b, s in _tiles(BG, R, bands):
        if s == 0:
            dq[r, :, a:b] = 0.0
            continue
        qb, dzb = q4[r, :, a:b], dz4[r, :, a:b]  # (n, R, rows, D)
        p = qb @ kT3[r, None, :, :s]  # (n, R, rows, s): the scores, as `attend` computed them
        softmax_in_place(p.reshape(-1, b - a, s), None if mask is None else mask[a:b, :s])  # the pattern
        dv_part = p.swapaxes(-1, -2) @ dzb  # (n, R, s, rows) @ (n, R, rows, D) -> (n, R, s, D)
        ds = dzb @ vT3[r, None, :, :s]  # d pattern: (n, R, rows, D) @ (n, 1, D, s) -> (n, R, rows, s)
        ds -= delta4[r, :, a:b]
        ds *= p  # dscores = pattern * (dpattern - rowsum(dpattern * pattern))
        dq[r, :, a:b] = ds @ k3[r, None, :s]  # (n, R, rows, s) @ (n, 1, s, D) -> (n, R, rows, D)
        dk_part = ds.swapaxes(-1, -2) @ qb  # (n, R, s, rows) @ (n, R, rows, D) -> (n, R, s, D)
        dv[r, :s] += dv_part[:, 0] if R == 1 else dv_part.sum(axis=1)
        dk[r, :s] += dk_part[:, 0] if R == 1 else dk_part.sum(axis=1)
    return dq.reshape(B, G, RT, D), dk.reshape(B, G, S, D), dv.reshape(B, G, S, D)
