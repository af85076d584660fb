"""DeepSeek's fused MLA layout."""

from __future__ import annotations

import numpy as np

from ..attention.mla import dims


def to_deepseek_layout(params: dict, config) -> dict:
    """The weights in the layout of DeepSeek-V3's ``inference/model.py`` ((out, in), fused, per-head interleaved).

    ``wq_a`` (Dq, C), ``q_norm``, ``wq_b`` (H·(Dh+Dr), Dq) whose rows are, per head, [W_UQ,i; W_QR,i]
    (without query compression ``wq`` (H·(Dh+Dr), C), the same per-head order); ``wkv_a``
    (Dc+Dr, C) = [W_DKV; W_KR]; ``kv_norm``; ``wkv_b`` (H·(Dh+Dv), Dc) whose rows are, per head,
    [W_UK,i; W_UV,i]; ``wo`` (C, H·Dv). A loader for real checkpoints would use `from_deepseek_layout`.

    note: DeepSeek rotates consecutive pairs (``rope_style="interleaved"``); HF's port de-interleaves
    and rotates halves. Either is fine as long as q_R and k_R agree (q·k is unchanged).
    """
    H, Dh, Dv, Dc, Dq, Dr = dims(config)

    def per_head(*blocks):  # blocks (in, H·w_k) -> rows (H·Σw, in), per head [block_1; block_2; ...]
        parts = [b.reshape(b.shape[0], H, -1).transpose(1, 2, 0) for b in blocks]  # each (H, w_k, in)
        stacked = np.concatenate(parts, axis=1)  # (H, Σw, in)
        return stacked.reshape(-1, stacked.shape[-1])  # (H·Σw, in)

    zeros = np.zeros((params["W_DKV"].shape[0], 0), params["W_DKV"].dtype)  # (C, 0): the absent RoPE key when Dr = 0
    out = {"wkv_a": np.concatenate([params["W_DKV"], params.get("W_KR", zeros)], axis=1).T,  # (Dc + Dr, C)
           "wkv_b": per_head(params["W_UK"], params["W_UV"]),  # (H·(Dh + Dv), Dc)
           "wo": params["W_O"].T}  # (C, H·Dv)
    if Dq:
        W_QR = params.get("W_QR", np.zeros((Dq, 0), params["W_UQ"].dtype))
        out.update(wq_a=params["W_DQ"].T, wq_b=per_head(params["W_UQ"], W_QR))  # (Dq, C), (H·(Dh+Dr), Dq)
    else:
        out["wq"] = per_head(params["W_Q"][:, :H * Dh], params["W_Q"][:, H * Dh:])  # (H·(Dh+Dr), C)
    for name in ("kv_norm", "q_norm"):
        if name in params:
            out[name] = params[name]
    return out


def from_deepseek_layout(packed: dict, config) -> dict:
    """The inverse of `to_deepseek_layout`: role-named (in, out) weights for `forward`."""
    H, Dh, Dv, Dc, Dq, Dr = dims(config)

    def split_heads(rows, widths):  # rows (H·Σw, in) -> [(in, H·w_k), ...]
        per = rows.reshape(H, sum(widths), -1)  # (H, Σw, in)
        edges = np.cumsum([0] + list(widths))
        return [per[:, a:b].transpose(2, 0, 1).reshape(per.shape[-1], -1) for a, b in zip(edges[:-1], edges[1:])]

    kv_a = packed["wkv_a"].T  # (C, Dc + Dr)
    W_UK, W_UV = split_heads(packed["wkv_b"], (Dh, Dv))
    params = {"W_DKV": kv_a[:, :Dc], "W_UK": W_UK, "W_UV": W_UV, "W_O": packed["wo"].T}
    if Dr:
        params["W_KR"] = kv_a[:, Dc:]
    if Dq:
        W_UQ, W_QR = split_heads(packed["wq_b"], (Dh, Dr))
        params.update(W_DQ=packed["wq_a"].T, W_UQ=W_UQ)
        if Dr:
            params["W_QR"] = W_QR
    else:
        q_c, q_r = split_heads(packed["wq"], (Dh, Dr))
        params["W_Q"] = np.concatenate([q_c, q_r], axis=1)  # (C, [H·Dh | H·Dr])
    for name in ("kv_norm", "q_norm"):
        if name in packed:
            params[name] = packed[name]
    return {k: np.ascontiguousarray(v) for k, v in params.items()}
