# Source of notebooks/solutions/07_mla_latent_attention_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 07_mla`.

# %% [markdown]
# # Solutions · Stage 4, variant · Multi-Head Latent Attention · *retrieval from a compressed index*
#
# Worked solutions to the exercises of `07_mla_latent_attention.ipynb`. Try them
# there first: a solution read before the attempt teaches much less than one
# read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import numpy as np

from minitransformer.core import registry
from minitransformer.attention import mla
from minitransformer.attention import mla_accounting
from minitransformer.core.config import ModelConfig
from minitransformer.attention.mla_accounting import DEEPSEEK_V2_LITE, DEEPSEEK_V3

# The notebook's setup, the part the checks use: the MLA layer of section 3, in float64.
ours = ModelConfig(vocab_size=512, context_length=64, d_model=64, n_layers=2, n_heads=4, positional="rope",
                   norm="rmsnorm", bias=False, attention="mla", d_latent=32, d_rope=8)
rng = np.random.default_rng(0)
params = mla.init(ours, rng)
H, Dh, Dv, Dc, Dq, Dr = mla.dims(ours)
p64 = {k: v.astype(np.float64) for k, v in params.items()}
x64 = rng.normal(size=(2, 40, ours.d_model))


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: the cache of DeepSeek-V2-Lite
#
# Per token and per layer, MLA caches the latent $c^{KV}_t$ ($d_c$ = 512 numbers)
# and the one rotated key $k^R_t$ shared by all heads ($d_R$ = 64): 576 numbers.
# MHA caches a key and a value for each of the 16 heads of 128: $2 \times 16
# \times 128 = 4{,}096$ numbers. Over 27 layers, at 2 bytes each:
#
# - MLA: $576 \times 27 \times 2 = $ **31,104** bytes per token;
# - MHA: $4{,}096 \times 27 \times 2 = $ **221,184** bytes per token, 7.1 times more.
#
# Query compression plays no part: queries are computed for the current token
# only and never cached. (V2-Lite has none anyway.)

# %%
def lite_cache_bytes():
    """Return (mla_bytes_per_token, mha_bytes_per_token) for DeepSeek-V2-Lite in BF16."""
    layers, heads, d_head, d_latent, d_rope, bytes_bf16 = 27, 16, 128, 512, 64, 2
    mla = (d_latent + d_rope) * layers * bytes_bf16  # c_KV and the shared k_R
    mha = 2 * heads * d_head * layers * bytes_bf16  # a key and a value per head
    return mla, mha


print("V2-Lite, bytes per token (MLA, MHA):", lite_cache_bytes())


def test_lite():
    mla, mha = lite_cache_bytes()
    assert mla == mla_accounting.kv_bytes_per_token(DEEPSEEK_V2_LITE, "mla"), "count c_KV and k_R, per layer"
    assert mha == mla_accounting.kv_bytes_per_token(DEEPSEEK_V2_LITE, "mha"), "a key and a value per head"


check("core 1 (V2-Lite cache)", test_lite)

# %% [markdown]
# ## Core 2: absorbed scores of one head
#
# Head $i$ owns the columns $i D_h$ to $(i+1) D_h$ of `W_UK`, a (Dc, Dh) block
# $W^{UK}_i$, and its keys would be $k^C = c^{KV} W^{UK}_i$. The scores are then
# $q^C k^{C\top} = q^C (c^{KV} W^{UK}_i)^\top = (q^C W^{UK\top}_i)\, c^{KV\top}$:
# multiply the queries by $W^{UK\top}_i$ first, which moves them into latent
# space (T, Dc), and compare them with the latents directly. No (S, Dh) key is
# ever formed, whatever the number S of cached tokens.

# %%
def absorbed_content_scores(q_c, c_kv, W_UK, i, d_head):
    W_UK_i = W_UK[:, i * d_head:(i + 1) * d_head]  # (Dc, H·Dh) -> head i's block (Dc, Dh)
    q_latent = q_c @ W_UK_i.T  # (T, Dh) @ (Dh, Dc) -> (T, Dc): the query in latent space
    return q_latent @ c_kv.T  # (T, Dc) @ (Dc, S) -> (T, S)


def test_absorbed_scores():
    r = np.random.default_rng(5)
    W_UK = r.normal(size=(24, 4 * 16))
    q_c, c_kv = r.normal(size=(3, 16)), r.normal(size=(7, 24))
    for i in range(4):
        k_c = c_kv @ W_UK[:, i * 16:(i + 1) * 16]  # the naive way: materialise the keys of head i
        assert np.allclose(absorbed_content_scores(q_c, c_kv, W_UK, i, 16), q_c @ k_c.T)


check("core 2 (absorbed scores)", test_absorbed_scores)

# %% [markdown]
# ## Stretch 3: fold $W^{UV}$ into $W^O$
#
# The output is $y = \sum_i (\bar o_i W^{UV}_i)\, W^O_i$, where $\bar o_i$ (Dc) is
# head $i$'s latent output, $W^{UV}_i$ (Dc, Dv) its block of columns of `W_UV` and
# $W^O_i$ (Dv, C) its block of rows of `W_O`. By associativity each term is
# $\bar o_i\, (W^{UV}_i W^O_i)$, so the merged matrix stacks the $H$ products
# $W^{UV}_i W^O_i$, each (Dc, C), on top of each other: (H·Dc, C), in the order
# of the heads side by side in `hook_z_latent`.
#
# **Why DeepSeek does not store it.** The merged matrix has $H d_c C$ entries,
# the two factors $H d_c d_v + H d_v C$. With $d_c > d_v$ the merged one is the
# larger, and it costs as many more multiply-adds per token as it has extra
# entries. At V3's sizes (128 heads, $d_c$ = 512, $d_v$ = 128, $C$ = 7168),
# computed below: 470 M numbers per layer instead of 126 M, 3.7 times more, in
# memory and in arithmetic. Folding only pays when $d_c \le d_v$. So DeepSeek's
# inference code (`attn_impl="absorb"`) keeps `wkv_b` and `wo` apart: it
# up-projects each head's latent output with $W^{UV}_i$ at run time, then applies
# `wo`, which is the order of the absorbed path in `attention.mla`.

# %%
def fold_value_into_output(params, H, Dc, Dv):
    W_UV = params["W_UV"].reshape(Dc, H, Dv).transpose(1, 0, 2)  # (Dc, H·Dv) -> (H, Dc, Dv)
    W_O = params["W_O"].reshape(H, Dv, -1)  # (H·Dv, C) -> (H, Dv, C)
    return (W_UV @ W_O).reshape(H * Dc, -1)  # (H, Dc, C) -> (H·Dc, C), the heads stacked


s = DEEPSEEK_V3
merged = s.n_heads * s.d_latent * s.d_model
factors = s.n_heads * s.d_latent * s.d_v + s.n_heads * s.d_v * s.d_model
print(f"V3, one layer: merged {merged:,} numbers, W_UV + W_O {factors:,} ({merged / factors:.1f}x)")


def test_fold():
    W = fold_value_into_output(p64, H, Dc, Dv)
    y, cc = mla.forward(p64, x64, ours, np.arange(40), impl="absorbed", need_cache=True, positional=registry.chosen("positional", ours))
    z_lat = cc["hook_z_latent"].transpose(0, 2, 1, 3).reshape(2, 40, H * Dc)  # (B, T, H·Dc)
    assert W.shape == (H * Dc, ours.d_model)
    assert np.allclose(z_lat @ W, y, atol=1e-8)


check("stretch 3 (fold W_UV into W_O)", test_fold)
