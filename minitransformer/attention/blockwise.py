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

Three more savings on each tile (`_exp_scores`): the softmax's division by the row sums is
applied to z (rows x D) instead of the pattern (rows x S); when a cheap bound shows that no
score is large, the row maxima are not subtracted before ``exp``; and ``exp`` itself is
computed as ``exp2`` of the scores times log2(e), which numpy's float32 runs faster.

Shapes: q (B, G, R·T, D) with the R query heads of a group one after another (see `mha`),
already scaled by 1/sqrt(D); kT (B, G, D, S); v (B, G, S, D); mask (T, S) or None; ``bands``
from `causal_bands` (or `whole`: one band that reads every key).
Tested equal to the plain formulas (tests/test_blockwise.py) and, through `mha`, to the
readable reference path (tests/test_reference_paths.py, tests/test_lean_cache.py).
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


def causal_bands(positions: np.ndarray, key_positions: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``[(a, b, lo, s)]``: query rows ``a:b`` see only the first ``s`` keys (the rest are in their future),
    and every one of them sees the first ``lo``: the mask matters only in columns ``lo:s``.

    ``positions`` (T,) of the queries, ``key_positions`` (S,) consecutive. With T queries at the
    end of S keys (training: S = T) the bands have about T / `BANDS` rows, at least `BAND`;
    a short T is one band.
    """
    T, S = len(positions), len(key_positions)
    size = max(BAND, -(-T // BANDS))
    visible = np.clip(np.asarray(positions) - key_positions[0] + 1, 0, S)  # (T,) keys each query may read
    return [(a, min(a + size, T), int(visible[a:a + size].min()), int(visible[a:a + size].max()))
            for a in range(0, T, size)]


def whole(T: int, S: int) -> list[tuple[int, int, int, int]]:
    """One band that reads every key, unmasked (one new token against a KV cache)."""
    return [(0, T, S, S)]


def _tiles(n_slabs: int, R: int, bands: list, masks: list) -> list:
    """``(slabs, a, b, s, band_mask)`` tiles: each band's rows with as many slabs as keep its scores in the L2 cache,
    and the band's mask (from ``masks``, `band_masks`)."""
    return [(r, a, b, s, m) for (a, b, lo, s), m in zip(bands, masks)
            for r in row_blocks(n_slabs, R * (b - a) * max(s, 1))]


SAFE_EXP = 30.0  # |score| below this: exp(score) neither overflows nor underflows in float32, no shift needed
LOG2E = 1.4426950408889634  # log2(e): exp(x) = 2 ** (x * log2(e))


def score_bounds(q4: np.ndarray, kT3: np.ndarray) -> np.ndarray:
    """An upper bound on |score| for every query row: ``|q_i| * max_j |k_j|`` (Cauchy-Schwarz), (BG, R, T, 1)."""
    q_norm = np.sqrt(np.einsum("nrtd,nrtd->nrt", q4, q4))[..., None]  # (BG, R, T, 1)
    k_norm = np.sqrt(np.einsum("ndj,ndj->nj", kT3, kT3)).max(axis=-1)  # (BG,)
    return q_norm * k_norm[:, None, None, None]


def needs_shift(q: np.ndarray, kT: np.ndarray) -> bool:
    """Whether some score of ``q @ kT`` (q (B, G, R·T, D), kT (B, G, D, S)) may be ``SAFE_EXP`` or more from
    zero (`score_bounds`): then every tile's rows are shifted by their maxima before ``exp2``.

    `attend` and `attend_backward` take the answer as ``shift`` (a caller that runs both, as `mha`
    does, asks once), or work it out themselves.
    """
    B, G, RT, D = q.shape
    return float(score_bounds(q.reshape(B * G, 1, RT, D), kT.reshape(B * G, D, -1)).max()) > SAFE_EXP


def band_masks(mask: Optional[np.ndarray], bands: list) -> list:
    """Per band, its rows of ``mask`` over the keys it reads, or None where nothing is masked.

    Each is a pair of flat contiguous rows: the mask itself (0 and -inf) and the keep-mask (1 and 0).
    note: `_exp_scores` applies them to the tile seen as (slabs, rows * s): one long contiguous
    pass, which numpy runs 2-4x faster than one on the strided diagonal corner ``[a:b, lo:s]`` of a
    4-D view (an inner loop only s - lo values long). The extra columns add 0 or multiply by 1.
    A caller that runs every layer with one mask (`mha`) makes them once and passes them to
    `attend` and `attend_backward` as ``masks``.
    """
    masks = []
    for a, b, lo, s in bands:
        if mask is None or lo >= s:
            masks.append(None)
            continue
        flat = np.ascontiguousarray(mask[a:b, :s]).reshape(-1)  # (rows * s,)
        masks.append((flat, (flat == 0).astype(mask.dtype)))
    return masks


def _exp_scores(p: np.ndarray, band_mask: Optional[tuple], shift: bool, ones: np.ndarray) -> np.ndarray:
    """Turn a tile of scores (n, R, rows, s), in base-2 units, into ``exp(scores + mask - shift)`` in place;
    return 1 / row sums (n, R, rows, 1).

    The tile holds ``scores * log2(e)`` (the callers multiplied q by `LOG2E`), and ``2 ** (x log2 e)``
    is ``e ** x``: numpy's float32 ``exp2`` runs about 1.8x faster than its ``exp`` here, and the
    multiplication costs one pass over q (rows x D), not over the tile (rows x s). The pattern is
    ``p * (1 / row sums)``; callers fold that factor into the narrower arrays (z, dz) instead of
    scaling the tile.

    With ``shift``, each row's maximum is subtracted first, the usual guard against overflow. The
    callers pass ``shift=False`` when `score_bounds` says every score, masked or not, is within
    ``SAFE_EXP`` of zero: then the two passes it costs (the row maxima, the subtraction) are
    skipped, and softmax does not change when a row is shifted, so the result is the same to
    rounding. Then the masked entries are zeroed after ``exp2`` (times the keep-mask) rather than
    set to -inf before it, because ``exp2`` is as slow as ``exp`` on -inf. ``band_mask`` is the
    band's pair from `band_masks`; ``ones`` is a column of at least s ones (the caller makes it once).
    """
    s = p.shape[-1]
    tile = p.reshape(-1, p.shape[-2] * s)  # (n*R, rows*s), a view
    flat = p.reshape(-1, s)  # (n*R*rows, s), a view
    if shift:
        if band_mask is not None:  # the band meets the diagonal: its future keys get -inf
            tile += band_mask[0]
        flat -= np.fmax.reduce(flat, axis=-1, keepdims=True)  # note: fmax skips numpy's NaN checks: faster than max
    np.exp2(flat, out=flat)
    if not shift and band_mask is not None:
        tile *= band_mask[1]  # the future keys' exponentials become 0
    sums = flat @ ones[:s]  # (n*R*rows, 1): the row sums, as a matmul with ones
    return np.divide(1.0, sums, out=sums).reshape(*p.shape[:-1], 1)


def attend(q: np.ndarray, kT: np.ndarray, v: np.ndarray, mask: Optional[np.ndarray], bands: list,
           shift: Optional[bool] = None, masks: Optional[list] = None) -> np.ndarray:
    """z = softmax(q @ kT + mask) @ v, tile by tile; q (B, G, R·T, D) -> z (B, G, R·T, D).

    ``shift`` (`needs_shift` of q and kT) and ``masks`` (`band_masks` of mask and bands), if the
    caller has them (None: worked out here).
    """
    B, G, RT, D = q.shape
    S, T = kT.shape[-1], bands[-1][1]
    R = RT // T
    q4, kT3, v3 = q.reshape(B * G, R, T, D), kT.reshape(B * G, D, S), v.reshape(B * G, S, D)
    if T == 1 and mask is None:  # decoding one token against the KV cache: one tile, the plain softmax
        p = q4 @ kT3[:, None]  # (BG, R, 1, D) @ (BG, 1, D, S) -> (BG, R, 1, S)
        p -= np.fmax.reduce(p, axis=-1, keepdims=True)
        np.exp(p, out=p)
        z = p @ v3[:, None]  # (BG, R, 1, S) @ (BG, 1, S, D) -> (BG, R, 1, D)
        z /= np.add.reduce(p, axis=-1, keepdims=True)
        return z.reshape(B, G, RT, D)
    if shift is None:
        shift = needs_shift(q, kT)  # some score may be large: shift every tile
    q2 = np.multiply(q4, LOG2E, dtype=q4.dtype)  # the scores in base-2 units (see `_exp_scores`)
    z = np.empty((B * G, R, T, D), np.result_type(q, v))
    ones = np.ones((S, 1), q2.dtype)  # for the tiles' row sums
    masks = band_masks(mask, bands) if masks is None else masks
    for r, a, b, s, band_mask in _tiles(B * G, R, bands, masks):
        if s == 0:  # no key is visible (a query before every key): nothing retrieved
            z[r, :, a:b] = 0.0
            continue
        p = q2[r, :, a:b] @ kT3[r, None, :, :s]  # (n, R, rows, D) @ (n, 1, D, s) -> (n, R, rows, s)
        inv_sum = _exp_scores(p, band_mask, shift, ones)  # p = exp(scores), unnormalised
        zb = p @ v3[r, None, :s]  # (n, R, rows, s) @ (n, 1, s, D) -> (n, R, rows, D)
        np.multiply(zb, inv_sum, out=z[r, :, a:b])  # the softmax's normalisation, applied to z
    return z.reshape(B, G, RT, D)


def attend_backward(q: np.ndarray, kT: np.ndarray, vT: np.ndarray, dz: np.ndarray, delta: np.ndarray,
                    mask: Optional[np.ndarray], bands: list, shift: Optional[bool] = None,
                    masks: Optional[list] = None):
    """Gradients of `attend` w.r.t. q, k and v: ``(dq (B, G, R·T, D), dk (B, G, S, D), dv (B, G, S, D))``.

    ``vT`` (B, G, D, S) is v transposed; ``dz`` (B, G, R·T, D) is the gradient of z; ``delta``
    (B, G, R·T, 1) = rowsum(dz * z), which equals rowsum(dpattern * pattern) (FlashAttention's
    identity). Per tile the pattern P = E / rowsum(E) is recomputed as `attend` computed it
    (E = the exponentials), then

        dv += P^T @ dz = E^T @ (dz / rowsum)
        dscores = P * (dz @ v^T - delta) = E * ((dz / rowsum) @ v^T - delta / rowsum)
        dq  = dscores @ k       dk += dscores^T @ q

    summed over the R heads of a group for dk and dv (they share those keys and values).
    ``shift`` and ``masks`` are as `attend` took them (None: worked out again, the same way).
    """
    B, G, RT, D = q.shape
    S, T = kT.shape[-1], bands[-1][1]
    R = RT // T
    BG = B * G
    q4, kT3, vT3 = q.reshape(BG, R, T, D), kT.reshape(BG, D, S), vT.reshape(BG, D, S)
    # note: dq's product runs about 40 % faster against a contiguous k than against kT's transposed view
    k3 = np.ascontiguousarray(kT3.transpose(0, 2, 1))  # (BG, S, D)
    dz4, delta4 = dz.reshape(BG, R, T, D), delta.reshape(BG, R, T, 1)
    if shift is None:
        shift = needs_shift(q, kT)  # as `attend` decided
    q2 = np.multiply(q4, LOG2E, dtype=q4.dtype)  # base-2 units, as `attend` computed the scores
    dtype = np.result_type(q, dz)
    dq = np.empty((BG, R, T, D), dtype)
    dk, dv = np.zeros((BG, S, D), dtype), np.zeros((BG, S, D), dtype)
    ones = np.ones((S, 1), q2.dtype)  # for the tiles' row sums
    masks = band_masks(mask, bands) if masks is None else masks
    for r, a, b, s, band_mask in _tiles(BG, R, bands, masks):
        if s == 0:
            dq[r, :, a:b] = 0.0
            continue
        qb = q4[r, :, a:b]  # (n, R, rows, D)
        e = q2[r, :, a:b] @ kT3[r, None, :, :s]  # (n, R, rows, s): the scores, as `attend` computed them
        inv_sum = _exp_scores(e, band_mask, shift, ones)  # the exponentials E
        dzs = dz4[r, :, a:b] * inv_sum  # dz / rowsum: (n, R, rows, D)
        dv_part = e.swapaxes(-1, -2) @ dzs  # (n, R, s, rows) @ (n, R, rows, D) -> (n, R, s, D)
        ds = dzs @ vT3[r, None, :, :s]  # (n, R, rows, D) @ (n, 1, D, s) -> (n, R, rows, s)
        ds -= delta4[r, :, a:b] * inv_sum
        ds *= e  # dscores
        np.matmul(ds, k3[r, None, :s], out=dq[r, :, a:b])  # (n, R, rows, s) @ (n, 1, s, D) -> (n, R, rows, D)
        dk_part = ds.swapaxes(-1, -2) @ qb  # (n, R, s, rows) @ (n, R, rows, D) -> (n, R, s, D)
        dv[r, :s] += dv_part[:, 0] if R == 1 else dv_part.sum(axis=1)
        dk[r, :s] += dk_part[:, 0] if R == 1 else dk_part.sum(axis=1)
    return dq.reshape(B, G, RT, D), dk.reshape(B, G, S, D), dv.reshape(B, G, S, D)
