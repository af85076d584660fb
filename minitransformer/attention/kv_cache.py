"""KV caches: the stored index of retrieval, so a new token costs O(T), not O(T²).

`KVCache` keeps the keys and values of multi-, grouped- and multi-query
attention; `LatentKVCache` keeps Multi-Head Latent Attention's compressed
latent and its one shared rotated key. Each attention variant names its own
cache (``make_cache`` in the registry); the model asks the variant for it.

Dimension letters: B batch, G key/value heads, S stored positions, D head width,
Dc latent width, Dr decoupled-RoPE width.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


class KVCache:
    """Keys and values of past positions, for every layer, preallocated to ``max_len``.

    Arrays are (B, G, max_len, D) per layer; ``length`` positions are filled. The
    keys are stored *after* RoPE, at their absolute positions, so they never need
    rotating again.

    >>> cache = KVCache(n_layers=2, batch_size=1, max_len=8, n_kv_heads=2, d_head=4)
    >>> cache.length, cache.nbytes
    (0, 0)
    """

    def __init__(self, n_layers: int, batch_size: int, max_len: int, n_kv_heads: int, d_head: int,
                 dtype=np.float32):
        shape = (batch_size, n_kv_heads, max_len, d_head)
        self.k = [np.zeros(shape, dtype) for _ in range(n_layers)]
        self.v = [np.zeros(shape, dtype) for _ in range(n_layers)]
        self.max_len = max_len
        self.lengths = [0] * n_layers
        self.derived: dict = {}  # what attention derives from its weights once per cache (the fused q|k|v)

    @classmethod
    def for_config(cls, config, batch_size: int = 1, max_len: Optional[int] = None) -> "KVCache":
        return cls(config.n_layers, batch_size, max_len or config.context_length, config.kv_heads, config.d_head)

    @property
    def length(self) -> int:
        """Positions stored (the next token's absolute position)."""
        return self.lengths[0]

    @property
    def nbytes(self) -> int:
        """Bytes of keys and values actually stored (filled positions, all layers)."""
        per_position = 2 * self.k[0].shape[0] * self.k[0].shape[1] * self.k[0].shape[3] * self.k[0].itemsize
        return per_position * sum(self.lengths)

    @property
    def capacity_nbytes(self) -> int:
        """Bytes allocated (all ``max_len`` positions)."""
        return sum(a.nbytes for a in self.k + self.v)

    def append(self, layer: int, k: np.ndarray, v: np.ndarray):
        """Store (B, G, T, D) new keys/values for ``layer``; return views of all stored ones (B, G, S, D)."""
        start, T = self.lengths[layer], k.shape[2]
        if k.shape[:2] != self.k[layer].shape[:2] or k.shape[3] != self.k[layer].shape[3]:
            B, G, _, D = self.k[layer].shape
            raise ValueError(f"the KV cache stores (B, G, T, D) = ({B}, {G}, T, {D}); got keys {k.shape}: create it with "
                             "KVCache.for_config(config, batch_size=...) for this batch and config")
        if start + T > self.max_len:
            raise ValueError(f"the KV cache holds {self.max_len} positions and {start} are used: {T} more do not fit; "
                             "call reset() or create a cache with a larger max_len (at most the context length)")
        self.k[layer][:, :, start:start + T] = k
        self.v[layer][:, :, start:start + T] = v
        self.lengths[layer] = start + T
        return self.k[layer][:, :, :start + T], self.v[layer][:, :, :start + T]

    def reset(self) -> None:
        """Forget every position (the arrays are kept for reuse)."""
        self.lengths = [0] * len(self.lengths)
        self.derived.clear()

    def __repr__(self) -> str:
        B, G, L, D = self.k[0].shape
        return f"KVCache(layers={len(self.k)}, batch={B}, kv_heads={G}, d_head={D}, length={self.length}/{L}, {self.nbytes:,} bytes)"


class LatentKVCache:
    """The MLA cache: per layer and token, the latent c_KV (Dc) and the rotated shared key k_R (Dr).

    Each layer holds one (B, max_len, Dc + Dr) array, laid out [c_KV | k_R]: read
    as a whole it is the single shared key of the absorbed (multi-query) view,
    and its two slices are the latents and the positional keys. k_R is stored
    *after* RoPE at its absolute position, so it is never rotated again; c_KV
    never is rotated at all.

    >>> cache = LatentKVCache(n_layers=2, batch_size=1, max_len=8, d_latent=6, d_rope=2)
    >>> cache.numbers_per_token, cache.length, cache.nbytes
    (8, 0, 0)
    """

    def __init__(self, n_layers: int, batch_size: int, max_len: int, d_latent: int, d_rope: int,
                 dtype=np.float32):
        self.kv = [np.zeros((batch_size, max_len, d_latent + d_rope), dtype) for _ in range(n_layers)]
        self.d_latent, self.d_rope, self.max_len = d_latent, d_rope, max_len
        self.lengths = [0] * n_layers

    @classmethod
    def for_config(cls, config, batch_size: int = 1, max_len: Optional[int] = None, dtype=np.float32):
        return cls(config.n_layers, batch_size, max_len or config.context_length, config.latent_dim, config.rope_dim, dtype)

    @property
    def length(self) -> int:
        """Positions stored (the next token's absolute position when the cache started at 0)."""
        return self.lengths[0]

    @property
    def numbers_per_token(self) -> int:
        """Dc + Dr: numbers stored per token, per layer and sequence (576 in DeepSeek-V2/V3)."""
        return self.d_latent + self.d_rope

    @property
    def nbytes(self) -> int:
        """Bytes of latents and rotated keys actually stored (filled positions, all layers)."""
        B = self.kv[0].shape[0]
        return B * self.numbers_per_token * self.kv[0].itemsize * sum(self.lengths)

    @property
    def capacity_nbytes(self) -> int:
        """Bytes allocated (all ``max_len`` positions)."""
        return sum(a.nbytes for a in self.kv)

    def c_kv(self, layer: int) -> np.ndarray:
        """The stored latents of ``layer``, (B, S, Dc) (a view)."""
        return self.kv[layer][:, :self.lengths[layer], :self.d_latent]

    def k_r(self, layer: int) -> np.ndarray:
        """The stored rotated shared keys of ``layer``, (B, S, Dr) (a view)."""
        return self.kv[layer][:, :self.lengths[layer], self.d_latent:]

    def append(self, layer: int, c_kv: np.ndarray, k_r: np.ndarray) -> np.ndarray:
        """Store (B, T, Dc) latents and (B, T, Dr) rotated keys; return all stored (B, S, Dc + Dr) (a view)."""
        start, T = self.lengths[layer], c_kv.shape[1]
        B = self.kv[layer].shape[0]
        if c_kv.shape != (B, T, self.d_latent) or k_r.shape != (B, T, self.d_rope):
            raise ValueError(f"the latent cache stores c_KV (B, T, {self.d_latent}) and k_R (B, T, {self.d_rope}) "
                             f"with batch B = {B}; got {c_kv.shape} and {k_r.shape}: create the cache with "
                             "LatentKVCache.for_config(config, batch_size=...) for this batch and config")
        if start + T > self.max_len:
            raise ValueError(f"the latent cache holds {self.max_len} positions and {start} are used: {T} more do "
                             "not fit; call reset() or create a cache with a larger max_len")
        self.kv[layer][:, start:start + T, :self.d_latent] = c_kv
        self.kv[layer][:, start:start + T, self.d_latent:] = k_r
        self.lengths[layer] = start + T
        return self.kv[layer][:, :start + T]

    def reset(self) -> None:
        """Forget every position (the arrays are kept for reuse)."""
        self.lengths = [0] * len(self.lengths)

    def __repr__(self) -> str:
        B, L, W = self.kv[0].shape
        return (f"LatentKVCache(layers={len(self.kv)}, batch={B}, d_latent={self.d_latent}, d_rope={self.d_rope}, "
                f"length={self.length}/{L}, {self.nbytes:,} bytes)")
