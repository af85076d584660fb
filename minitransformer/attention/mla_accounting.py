"""What attention costs at inference: KV-cache size, parameters and multiply-adds, MHA/GQA/MQA against MLA.

Pure arithmetic on sizes, no arrays: it works for our toy configs and for the
published DeepSeek configurations alike, and every figure of the MLA
guide in ``docs/mla.md`` (its cache and decode-cost tables, checks T1, T4, T11) is reproduced here.

Per token and per layer, the cache stores (elements, independent of precision):

    MHA   2·H·Dh          a key and a value for every head
    GQA   2·G·Dh          a key and a value for every group of heads
    MQA   2·Dh            one key and one value for all heads
    MLA   Dc + Dr         the latent c_KV and the shared rotated key k_R

DeepSeek-V2/V3 (H = 128, Dh = 128, Dc = 512, Dr = 64): MLA stores 576 = 4.5·Dh,
the size of GQA with 2.25 groups, against 32,768 for MHA.

    >>> v3 = DEEPSEEK_V3
    >>> kv_elements_per_token_layer(v3, "mla"), equivalent_gqa_groups(v3)
    (576, 2.25)
    >>> kv_bytes_per_token(v3, "mla", bytes_per_element=2)    # BF16, all 61 layers
    70272
    >>> mla_params_per_layer(v3)
    187107328
    >>> decode_macs(v3, 4096, "absorbed")["per_cached_token"]  # H·(2·Dc + Dr)
    139264

Multiply-adds are counted from the einsums a decode step performs
(`decode_plan`), one MAC per term of each sum, so the counts are checked against
closed-form formulas rather than assumed. Three decode paths:

- ``"absorbed"``: MLA as multi-query attention over the latent cache (what
  DeepSeek's ``attn_impl="absorb"`` and FlashMLA do);
- ``"naive_kv"``: keys and values decompressed once and cached per head (the
  Hugging Face port: no cache saving at all);
- ``"naive_reproject"``: only latents cached, and all of them up-projected to keys
  and values again at every step (saves memory, wastes compute).

Dimension letters: as in `attention.mla`; L layers, S cached positions.

Deliberately left out: FP8/quantised cache formats (FlashMLA's 656 B/token is
quoted in the notebook, not modelled), the MoE feed-forward, and anything that
depends on hardware (see `benchmarks/bench_mla.py` for measured times).

References: DeepSeek-V2 (arXiv 2405.04434) §2.1.4 Table 1, §3.1.2; DeepSeek-V3
(arXiv 2412.19437) §4.2; the DeepSeek-V3 ``inference/configs``; ISCA 2025
"Insights into DeepSeek-V3" Table 1 (per-token KV cache of V3, Qwen-2.5-72B,
LLaMA-3.1-405B).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MECHANISMS = ("mha", "gqa", "mqa", "mla")
DECODE_PATHS = ("absorbed", "naive_kv", "naive_reproject")


@dataclass(frozen=True)
class AttentionSizes:
    """The sizes that decide attention's costs (MLA's, plus what MHA/GQA comparisons need).

    Attributes:
        name: a label for tables and plots.
        d_model: C.  n_layers: L.  n_heads: H.
        d_head: Dh, the per-head query/key width without RoPE (the MHA head width in comparisons).
        d_v: Dv, the per-head value width.
        d_latent: Dc (``kv_lora_rank``).  d_latent_q: Dq (``q_lora_rank``; 0 = no query compression).
        d_rope: Dr (``qk_rope_head_dim``).
        n_kv_heads: G, for the GQA row of comparisons (the model's own, or a typical 8).
    """

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    d_head: int
    d_v: int
    d_latent: int
    d_latent_q: int
    d_rope: int
    n_kv_heads: int = 8

    @classmethod
    def from_config(cls, config, name: str = "") -> "AttentionSizes":
        """The sizes of a `ModelConfig`, MLA fields as the config resolves them (their defaults for "mha").

        The GQA comparison row uses the config's ``n_kv_heads`` if it groups heads, else H/2 groups (at most 8).
        """
        G = config.kv_heads if config.kv_heads < config.n_heads else max(1, min(8, config.n_heads // 2))
        return cls(name or f"d_model={config.d_model}, {config.n_heads} heads", config.d_model, config.n_layers,
                   config.n_heads, config.d_head, config.d_head, config.latent_dim, config.latent_q_dim,
                   config.rope_dim, n_kv_heads=G)


# [read] DeepSeek-V2 §3.1.2, V3 §4.2, DeepSeek-V3 inference/configs/config_{236B,671B,16B}.json
DEEPSEEK_V2 = AttentionSizes("DeepSeek-V2 (236B)", 5120, 60, 128, 128, 128, 512, 1536, 64)
DEEPSEEK_V3 = AttentionSizes("DeepSeek-V3 (671B)", 7168, 61, 128, 128, 128, 512, 1536, 64)
DEEPSEEK_V2_LITE = AttentionSizes("DeepSeek-V2-Lite (16B)", 2048, 27, 16, 128, 128, 512, 0, 64)
# GQA models of the ISCA comparison (layers, key/value heads, head width from their configs)
QWEN25_72B = AttentionSizes("Qwen-2.5-72B (GQA, 8 groups)", 8192, 80, 64, 128, 128, 0, 0, 0, n_kv_heads=8)
LLAMA31_405B = AttentionSizes("LLaMA-3.1-405B (GQA, 8 groups)", 16384, 126, 128, 128, 128, 0, 0, 0, n_kv_heads=8)


# --------------------------------------------------------------------------- the KV cache
def kv_elements_per_token_layer(sizes: AttentionSizes, mechanism: str, n_groups=None) -> int:
    """Numbers cached per token and layer: ``mha`` 2·H·Dh, ``gqa`` 2·G·Dh, ``mqa`` 2·Dh, ``mla`` Dc + Dr."""
    _check(mechanism, MECHANISMS, "mechanism")
    s = sizes
    if mechanism == "mha":
        return 2 * s.n_heads * s.d_head
    if mechanism == "gqa":
        return 2 * (n_groups or s.n_kv_heads) * s.d_head
    if mechanism == "mqa":
        return 2 * s.d_head
    return s.d_latent + s.d_rope


def kv_bytes_per_token(sizes: AttentionSizes, mechanism: str, bytes_per_element: float = 2, n_groups=None) -> int:
    """Bytes cached per token across all L layers (BF16 = 2 bytes by default)."""
    total = kv_elements_per_token_layer(sizes, mechanism, n_groups) * sizes.n_layers * bytes_per_element
    return int(total) if float(total).is_integer() else total


def equivalent_gqa_groups(sizes: AttentionSizes) -> float:
    """The number of GQA groups whose cache is as small as MLA's: (Dc + Dr) / (2·Dh)."""
    return (sizes.d_latent + sizes.d_rope) / (2 * sizes.d_head)


def kv_cache_table(sizes: AttentionSizes, bytes_per_element: float = 2) -> list[dict]:
    """One row per mechanism: elements per token and layer, in units of Dh, per token (all layers), bytes, × MLA."""
    mla = kv_elements_per_token_layer(sizes, "mla")
    rows = []
    for m in MECHANISMS:
        e = kv_elements_per_token_layer(sizes, m)
        rows.append({"mechanism": m.upper() + (f" ({sizes.n_kv_heads} groups)" if m == "gqa" else ""),
                     "elements_per_token_layer": e, "in_d_head": e / sizes.d_head,
                     "elements_per_token": e * sizes.n_layers,
                     "bytes_per_token": kv_bytes_per_token(sizes, m, bytes_per_element),
                     "times_mla": e / mla})
    return rows


def kv_cache_bytes(sizes: AttentionSizes, mechanism: str, context: int, batch: int = 1,
                   bytes_per_element: float = 2) -> float:
    """Bytes of the whole cache for ``batch`` sequences of ``context`` tokens (all layers)."""
    return kv_bytes_per_token(sizes, mechanism, bytes_per_element) * context * batch


# --------------------------------------------------------------------------- parameters
def mla_param_shapes(sizes: AttentionSizes, norms: bool = True) -> dict[str, tuple]:
    """The MLA weights of one layer and their shapes ((in, out), as `attention.mla.init` makes them)."""
    s = sizes
    H, Dh, Dv, Dc, Dq, Dr, C = s.n_heads, s.d_head, s.d_v, s.d_latent, s.d_latent_q, s.d_rope, s.d_model
    shapes = {}
    if Dq:
        shapes.update(W_DQ=(C, Dq), W_UQ=(Dq, H * Dh), W_QR=(Dq, H * Dr))
        if norms:
            shapes["q_norm"] = (Dq,)
    else:
        shapes["W_Q"] = (C, H * (Dh + Dr))
    shapes.update(W_DKV=(C, Dc), W_KR=(C, Dr), W_UK=(Dc, H * Dh), W_UV=(Dc, H * Dv), W_O=(H * Dv, C))
    if norms:
        shapes["kv_norm"] = (Dc,)
    return {k: v for k, v in shapes.items() if math.prod(v)}


def mla_params_per_layer(sizes: AttentionSizes, norms: bool = True) -> int:
    """MLA parameters of one layer (check T1 of ``docs/mla.md``):

    ``C·Dq + Dq + Dq·H(Dh+Dr) + C(Dc+Dr) + Dc + Dc·H(Dh+Dv) + H·Dv·C`` (norm gains included),
    or with ``C·H(Dh+Dr)`` for the query side when there is no query compression.
    """
    s = sizes
    H, Dh, Dv, Dc, Dq, Dr, C = s.n_heads, s.d_head, s.d_v, s.d_latent, s.d_latent_q, s.d_rope, s.d_model
    q_side = (C * Dq + (Dq if norms else 0) + Dq * H * (Dh + Dr)) if Dq else C * H * (Dh + Dr)
    return q_side + C * (Dc + Dr) + (Dc if norms else 0) + Dc * H * (Dh + Dv) + H * Dv * C


def mha_params_per_layer(sizes: AttentionSizes, n_kv_heads=None) -> int:
    """Bias-free MHA/GQA/MQA parameters of one layer: ``C·H·Dh + 2·C·G·Dh + H·Dh·C``."""
    s = sizes
    G = s.n_heads if n_kv_heads is None else n_kv_heads
    return s.d_model * s.n_heads * s.d_head + 2 * s.d_model * G * s.d_head + s.n_heads * s.d_head * s.d_model


# --------------------------------------------------------------------------- multiply-adds
def einsum_macs(subscripts: str, *shapes) -> int:
    """Multiply-adds of ``np.einsum(subscripts, *arrays)``: the product of the sizes of every index.

    >>> einsum_macs("hd,sd->hs", (4, 8), (10, 8))   # 4 heads · 10 keys · 8 terms each
    320
    """
    inputs = subscripts.replace(" ", "").split("->")[0].split(",")
    if len(inputs) != len(shapes):
        raise ValueError(f"{subscripts!r} names {len(inputs)} operands, got {len(shapes)} shapes")
    size = {}
    for letters, shape in zip(inputs, shapes):
        if len(letters) != len(shape):
            raise ValueError(f"operand {letters!r} has {len(letters)} indices but shape {shape}")
        for letter, n in zip(letters, shape):
            if size.setdefault(letter, n) != n:
                raise ValueError(f"index {letter!r} has sizes {size[letter]} and {n}")
    return math.prod(size.values())


def decode_plan(sizes: AttentionSizes, context: int, path: str) -> list[tuple[str, str, tuple]]:
    """The attention einsums of one decode step of one layer, one query token against ``context`` keys.

    Returns ``[(what, subscripts, operand shapes), ...]``; projections from and to the
    residual stream (W_DQ, W_UQ, W_QR, W_DKV, W_KR, W_O) are the same for every path and
    are left out (see `projection_macs`).
    """
    _check(path, DECODE_PATHS, "path")
    s, S = sizes, context
    H, Dh, Dv, Dc, Dr = s.n_heads, s.d_head, s.d_v, s.d_latent, s.d_rope
    mha_core = [
        ("content scores q_C·k_C", "hd,shd->hs", ((H, Dh), (S, H, Dh))),
        ("positional scores q_R·k_R", "hr,sr->hs", ((H, Dr), (S, Dr))),
        ("weighted sum of values", "hs,shv->hv", ((H, S), (S, H, Dv))),
    ]
    if path == "absorbed":
        return [
            ("absorb W_UK into the query", "hd,hdc->hc", ((H, Dh), (H, Dh, Dc))),
            ("content scores against latents", "hc,sc->hs", ((H, Dc), (S, Dc))),
            ("positional scores q_R·k_R", "hr,sr->hs", ((H, Dr), (S, Dr))),
            ("weighted sum of latents", "hs,sc->hc", ((H, S), (S, Dc))),
            ("up-project with W_UV", "hc,hcv->hv", ((H, Dc), (H, Dc, Dv))),
        ]
    if path == "naive_kv":
        # note: the new token's key and value are up-projected once, then cached per head
        return [("up-project the new key", "c,chd->hd", ((Dc,), (Dc, H, Dh))),
                ("up-project the new value", "c,chv->hv", ((Dc,), (Dc, H, Dv)))] + mha_core
    return [("up-project every cached latent to keys", "sc,chd->shd", ((S, Dc), (Dc, H, Dh))),
            ("up-project every cached latent to values", "sc,chv->shv", ((S, Dc), (Dc, H, Dv)))] + mha_core


def decode_macs(sizes: AttentionSizes, context: int, path: str) -> dict:
    """Attention multiply-adds of one decode step of one layer, counted from `decode_plan`.

    Returns ``{"total", "fixed", "per_cached_token", "cache_elements_read_per_token"}``;
    every einsum is linear in the context S, so total = fixed + S · per_cached_token.
    """
    def count(S):
        return sum(einsum_macs(sub, *shapes) for _, sub, shapes in decode_plan(sizes, S, path))

    fixed = count(0)
    s = sizes
    read = (s.d_latent + s.d_rope if path != "naive_kv"
            else s.n_heads * (s.d_head + s.d_rope) + s.n_heads * s.d_v)
    return {"total": count(context), "fixed": fixed, "per_cached_token": count(1) - fixed,
            "cache_elements_read_per_token": read}


def projection_macs(sizes: AttentionSizes) -> int:
    """Multiply-adds per token of the projections from and to the residual stream (all paths)."""
    s = sizes
    H, Dh, Dv, Dc, Dq, Dr, C = s.n_heads, s.d_head, s.d_v, s.d_latent, s.d_latent_q, s.d_rope, s.d_model
    q = C * Dq + Dq * H * (Dh + Dr) if Dq else C * H * (Dh + Dr)
    return q + C * (Dc + Dr) + H * Dv * C


def summary(sizes: AttentionSizes, context: int = 4096, bytes_per_element: float = 2) -> dict:
    """Everything above for one set of sizes, as one dict (for tables and the notebook)."""
    return {
        "name": sizes.name,
        "kv_cache": kv_cache_table(sizes, bytes_per_element),
        "equivalent_gqa_groups": equivalent_gqa_groups(sizes),
        "mla_params_per_layer": mla_params_per_layer(sizes),
        "mha_params_per_layer": mha_params_per_layer(sizes),
        "projection_macs_per_token_layer": projection_macs(sizes),
        "decode_macs_per_layer": {p: decode_macs(sizes, context, p) for p in DECODE_PATHS},
        "context": context,
    }


def _check(value, valid, name):
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {', '.join(map(repr, valid))}")
