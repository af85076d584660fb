"""What attention costs: forward FLOPs per token of each built-in variant (2 per multiply-add).

Each variant reports its own cost to the registry (``flops_per_token``), so the
model's estimate (`costs.estimate_flops_per_token`) never keeps a parallel formula.
"""

from __future__ import annotations

from .mla import dims


def mha_flops_per_token(config, seq_len: int) -> int:
    """Forward FLOPs per token (2 per multiply-add) of one layer over a causal sequence of ``seq_len``.

    The four projections cost C·(H + 2G)·D + H·D·C multiply-adds; the scores and the
    weighted sum cost D each per key, over seq_len / 2 keys on average: H·D·seq_len.
    """
    C, H, G, D = config.d_model, config.n_heads, config.kv_heads, config.d_head
    projections = C * (H + 2 * G) * D + H * D * C
    attend = H * D * seq_len
    return 2 * (projections + attend)


def mla_flops_per_token(config, seq_len: int) -> int:
    """Forward FLOPs per token (2 per multiply-add) of one MLA layer on the naive path, causal ``seq_len``.

    Down-projections x -> [c_Q | c_KV | k_R] (or x -> q directly), up-projections c_Q -> [q_C | q_R]
    and c_KV -> [k_C | v], the output W_O, then per key (seq_len / 2 on average) Dh + Dr for the
    score and Dv for the weighted sum, in each of the H heads.
    """
    H, Dh, Dv, Dc, Dq, Dr = dims(config)
    C = config.d_model
    query = C * Dq + Dq * H * (Dh + Dr) if Dq else C * H * (Dh + Dr)
    projections = query + C * (Dc + Dr) + Dc * H * (Dh + Dv) + H * Dv * C
    attend = H * (Dh + Dr + Dv) * seq_len // 2
    return 2 * (projections + attend)
