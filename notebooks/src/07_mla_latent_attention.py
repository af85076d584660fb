# Source of notebooks/07_mla_latent_attention.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 07_mla`.

# %% [markdown]
# # Stage 4, variant · Multi-Head Latent Attention · *retrieval from a compressed index*
#
# Attention is retrieval: a query is compared with the keys of earlier tokens and
# takes a weighted mix of their values. To generate text fast, a model keeps those
# keys and values in a **KV cache**, so that each new token is one lookup instead
# of a recomputation. At long contexts that cache, not the weights, is what fills
# the memory of an inference server.
#
# DeepSeek-V2 and V3 replace it by a **compressed index**: one small latent vector
# per token (plus one small rotated key), from which every head's key and value can
# be rebuilt. This notebook measures the problem, builds Multi-Head Latent
# Attention (MLA) from `minitransformer.attention.mla`, shows *why* the positional
# part has to be decoupled, compares the two ways of running it (naive and
# absorbed), times them, and trains a small model with MHA and with MLA.
#
# Everything runs offline in about a minute. Run the cells top to bottom.

# %%
# note: set before numpy is imported. Decoding is a chain of small products; on a shared 2-core
# machine OpenBLAS's second thread can spin against other processes and make them 100x slower,
# which would drown the timings of section 6 in noise (see benchmarks/bench_mla.py).
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import math
import time

import matplotlib
import numpy as np

from minitransformer.core import registry
from minitransformer import positional
from minitransformer.attention import mha
from minitransformer.attention import mla
from minitransformer.attention import mla_accounting
from minitransformer.figures import mla as mla_figures
from minitransformer.core import nn
from minitransformer.concepts import stage
from minitransformer.core.config import ModelConfig
from minitransformer.training.data import load_corpus, split_text
from minitransformer.attention.mla_accounting import DEEPSEEK_V2, DEEPSEEK_V2_LITE, DEEPSEEK_V3, LLAMA31_405B, QWEN25_72B
from minitransformer.model import GPT
from minitransformer.tokenizer import Tokenizer
from minitransformer.training import TrainConfig, Trainer

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small


def rule(title):
    print(f"\n{title}\n{'-' * len(title)}")


# %% [markdown]
# ## 1. The concept: retrieval from a compressed index
#
# In the concept table attention is **retrieval**. An information-retrieval system
# does not keep every document verbatim in its index: it keeps a compact
# representation from which relevance can be computed. MLA does the same for the
# KV cache. Per token it stores a latent $c^{KV}_t$ of width $d_c$; the key and
# value of head $i$ are *decompressed* on demand, $k^C_{t,i} = W^{UK}_i c^{KV}_t$ and
# $v_{t,i} = W^{UV}_i c^{KV}_t$. Position travels in a separate narrow channel, a key
# $k^R_t$ of width $d_R$ shared by all heads.

# %%
s = stage("attention")
print(f"stage {s.number}: {s.name}  ->  concept: {s.concept}")
print(f"question: {s.question}")

# %% [markdown]
# ## 2. Why the KV cache is the memory problem of inference
#
# Per token and per layer, multi-head attention caches a key and a value for every
# head: $2 n_h d_h$ numbers. Grouped-query attention (GQA) shares them across groups
# of heads, multi-query attention (MQA) across all heads, and MLA caches
# $d_c + d_R$. With DeepSeek-V3's sizes ($n_h = d_h = 128$, $d_c = 512$, $d_R = 64$,
# 61 layers, BF16):

# %%
for sizes in (DEEPSEEK_V3, DEEPSEEK_V2, DEEPSEEK_V2_LITE):
    rule(f"{sizes.name}: {sizes.n_layers} layers, {sizes.n_heads} heads of {sizes.d_head}, "
         f"d_c={sizes.d_latent}, d_R={sizes.d_rope}")
    print(f"{'mechanism':<18}{'elements/token/layer':>22}{'in d_h':>8}{'bytes/token (BF16)':>20}{'x MLA':>8}")
    for r in mla_accounting.kv_cache_table(sizes):
        print(f"{r['mechanism']:<18}{r['elements_per_token_layer']:>22,}{r['in_d_head']:>8.2f}"
              f"{r['bytes_per_token']:>20,}{r['times_mla']:>8.1f}")
    print(f"MLA caches as much as GQA with {mla_accounting.equivalent_gqa_groups(sizes):g} groups")

# %% [markdown]
# So V3 stores **70,272 bytes per token** for its whole 61-layer stack, where the
# same model with MHA would need 57 times more: about 4 MB per token, 0.5 TB for one
# 128K-token conversation. The GQA models of the same generation sit in between:

# %%
for sizes in (QWEN25_72B, LLAMA31_405B):
    b = mla_accounting.kv_bytes_per_token(sizes, "gqa")
    print(f"{sizes.name:<32} {b:>9,} B/token  = {b / mla_accounting.kv_bytes_per_token(DEEPSEEK_V3, 'mla'):.2f} x DeepSeek-V3")
v3_mha = mla_accounting.kv_cache_bytes(DEEPSEEK_V3, "mha", 128 * 1024)
v3_mla = mla_accounting.kv_cache_bytes(DEEPSEEK_V3, "mla", 128 * 1024)
print(f"\none 128K-token sequence of V3: MHA {v3_mha / 1e9:,.0f} GB, MLA {v3_mla / 1e9:.1f} GB")

# %% [markdown]
# The same comparison at our size: the MLA config used below has $d$ = 64,
# 4 heads of 16, $d_c$ = 32, $d_R$ = 8 and 2 layers. The lines are straight on
# log-log axes because a cache grows linearly with the context; the gaps between
# them are the constant ratios above.

# %%
ours = ModelConfig(vocab_size=512, context_length=64, d_model=64, n_layers=2, n_heads=4, positional="rope",
                   norm="rmsnorm", bias=False, attention="mla", d_latent=32, d_rope=8)
ours_sizes = mla_accounting.AttentionSizes.from_config(ours, "ours: d=64, 4 heads, d_c=32, d_R=8, 2 layers")
mla_figures.kv_cache_vs_context([ours_sizes, DEEPSEEK_V3], [512, 2048, 8192, 32768, 131072])

# %% [markdown]
# ## 3. The latent index, built and inspected
#
# One MLA layer with our sizes. `init` gives the weights their role names;
# `forward` returns the output and a cache whose entries carry stable names:
# `hook_latent` is $c^{KV}$, exactly what a latent cache stores.

# %%
rng = np.random.default_rng(0)
params = mla.init(ours, rng)
for name, w in params.items():
    print(f"{name:<8}{str(w.shape):>12}")
H, Dh, Dv, Dc, Dq, Dr = mla.dims(ours)
print(f"\nH={H} heads, Dh={Dh}, Dv={Dv}, Dc={Dc}, Dq={Dq} (0: no query compression), Dr={Dr}, "
      f"scale 1/sqrt(Dh+Dr) = {mla.softmax_scale(ours):.4f}")

# %% [markdown]
# Feed it the embeddings of a short sentence (random vectors stand in for a trained
# model's), once through the whole sequence and once token by token through a
# `LatentKVCache`. The cache ends up holding exactly the latents and rotated keys
# of the full pass, $T (d_c + d_R)$ numbers per layer, and the outputs agree.

# %%
words = "the cache keeps one small latent per token".split()
T = len(words)
x = rng.normal(size=(1, T, ours.d_model)).astype(np.float32)
y_full, c = mla.forward(params, x, ours, np.arange(T), need_cache=True, positional=registry.chosen("positional", ours))
cache = mla.LatentKVCache.for_config(ours)
y_steps = np.concatenate([mla.forward(params, x[:, t:t + 1], ours, np.array([t]), kv_cache=cache, positional=registry.chosen("positional", ours))[0]
                          for t in range(T)], axis=1)
print(cache)
print("numbers per token and layer:", cache.numbers_per_token, "=", Dc, "+", Dr)
print("cache == latents of the full pass:", np.allclose(cache.c_kv(0), c["hook_latent"], atol=1e-6),
      "| rotated keys:", np.allclose(cache.k_r(0), c["hook_rot_k"], atol=1e-6))
print(f"token-by-token == full pass: max |diff| {np.abs(y_steps - y_full).max():.1e}")
mla_figures.cache_contents(cache.c_kv(0)[0], cache.k_r(0)[0], words)

# %% [markdown]
# ## 4. Why RoPE must be decoupled (shown, not only said)
#
# Without positions, the content score of head $i$ is
# $q^{C\top}_{t,i} k^C_{j,i} = (W^{UQ}_i c^Q_t)^\top (W^{UK}_i c^{KV}_j) = c^{Q\top}_t \,(W^{UQ\top}_i W^{UK}_i)\, c^{KV}_j$:
# one fixed matrix between the two latents, so keys never need to exist. Put RoPE on
# the content key and query, and the score becomes
# $c^{Q\top}_t W^{UQ\top}_i R_{j-t} W^{UK}_i c^{KV}_j$: the matrix in the middle now
# depends on the gap $j - t$. There is no single matrix to absorb; every cached key
# would have to be up-projected and rotated again at every step.
#
# The experiment: rotate the content channel, then try to absorb anyway with the
# fixed product $W^{UQ\top}_i W^{UK}_i$. The score is right only at gap 0:

# %%
rng_r = np.random.default_rng(1)
d_lat, d_h, n_pos = 16, 8, 12
W_UQ_i = rng_r.normal(size=(d_lat, d_h))  # (in, out) as in the package: q = c_Q @ W_UQ_i
W_UK_i = rng_r.normal(size=(d_lat, d_h))
c_q_t = rng_r.normal(size=d_lat)  # the query token's latent, at position t = n_pos - 1
c_kv = rng_r.normal(size=(n_pos, d_lat))  # the cached latents at positions 0..n_pos-1
cos, sin = positional.rope_angles(np.arange(n_pos), d_h)
t = n_pos - 1
q_rot = positional.rope_apply((c_q_t @ W_UQ_i)[None, :], cos[t:t + 1], sin[t:t + 1], "half")[0]
k_rot = positional.rope_apply(c_kv @ W_UK_i, cos, sin, "half")  # (n_pos, d_h): every key rotated
true_scores = k_rot @ q_rot  # what RoPE-on-content attention computes
absorbed_try = c_kv @ (W_UK_i @ W_UQ_i.T) @ c_q_t  # the fixed absorbed matrix: no position at all
for j in range(n_pos):
    print(f"key at gap {t - j:2d}: true {true_scores[j]:8.3f}   absorbed attempt {absorbed_try[j]:8.3f}   "
          f"error {abs(true_scores[j] - absorbed_try[j]):6.3f}")

# %% [markdown]
# MLA's fix is to keep the content channel free of rotations and carry position in
# a separate channel: per-head $q^R_{t,i}$ and one shared $k^R_t$, computed from the
# token directly and cached *after* rotation. Then absorption is exact at every
# position, and the two forward paths of `attention.mla` agree to rounding:

# %%
p64 = {k: v.astype(np.float64) for k, v in params.items()}
x64 = rng.normal(size=(2, 40, ours.d_model))
naive = mla.forward(p64, x64, ours, np.arange(40), impl="naive", positional=registry.chosen("positional", ours))[0]
absorbed = mla.forward(p64, x64, ours, np.arange(40), impl="absorbed", positional=registry.chosen("positional", ours))[0]
print(f"decoupled RoPE, 40 positions: max |naive - absorbed| = {np.abs(naive - absorbed).max():.1e}")

# %% [markdown]
# ## 5. Naive and absorbed: the same numbers, different work
#
# **Naive** (training, prefill): up-project every latent to per-head keys and values,
# then ordinary attention. **Absorbed** (decoding): move the query into latent
# space, $\tilde q_{t,i} = W^{UK\top}_i q^C_{t,i}$, score it against the cached latents,
# attend over latents, and up-project the result once per head with $W^{UV}_i$.
# That is multi-query attention with one shared key $[c^{KV}; k^R]$ of width
# $d_c + d_R$ (576 in V3) and one shared value $c^{KV}$ (512): FlashMLA's "MQA mode".
#
# Multiply-adds of one decode step, one layer, counted from the einsums each path
# performs (`mla_accounting.decode_plan`):

# %%
for sizes, S in ((DEEPSEEK_V3, 32768), (ours_sizes, 2048)):
    rule(f"{sizes.name}, {S:,} cached tokens")
    print(f"{'path':<18}{'MACs per cached token':>22}{'fixed MACs':>14}{'cache numbers read/token':>26}{'total':>16}")
    for path in mla_accounting.DECODE_PATHS:
        d = mla_accounting.decode_macs(sizes, S, path)
        print(f"{path:<18}{d['per_cached_token']:>22,}{d['fixed']:>14,}{d['cache_elements_read_per_token']:>26,}"
              f"{d['total']:>16,}")

# %% [markdown]
# Absorption spends about 3.4 times more multiply-adds per cached token than a
# decompressed (per-head) cache, but reads 71 times fewer numbers from memory, and
# decoding is limited by memory, not arithmetic. Re-up-projecting the latent cache
# at every step (`naive_reproject`, what a simple "cache only the latent"
# implementation does) saves the memory but pays $2 n_h d_h d_c$ per cached token:
# about 120 times the absorbed cost at V3 sizes. For prefill and training, where there are
# as many queries as keys, the naive path is the cheaper one.

# %% [markdown]
# ## 6. Decode time per token, measured
#
# One new token against a cache that already holds $S$ positions, for the MHA
# cache, MLA naive (re-up-projecting all latents at every step) and MLA absorbed;
# one layer of the size `benchmarks/bench_mla.py` uses ($d$ = 512, 8 heads of 64,
# $d_c$ = 256, $d_R$ = 32), float32, medians of several calls.

# %%
bench = dict(vocab_size=256, context_length=2049, d_model=512, n_heads=8, n_layers=1, positional="rope", bias=False)
mla_cfg = ModelConfig(**bench, attention="mla", d_latent=256, d_latent_q=384, d_rope=32)
mha_cfg = ModelConfig(**bench)
rng_b = np.random.default_rng(2)
mla_p, mha_p = mla.init(mla_cfg, rng_b), mha.init(mha_cfg, rng_b)
lat_cache = mla.LatentKVCache.for_config(mla_cfg)
kv_cache = mha.KVCache.for_config(mha_cfg)
lat_cache.kv[0][:] = rng_b.normal(size=lat_cache.kv[0].shape).astype(np.float32)  # stand-in cached rows
kv_cache.k[0][:] = rng_b.normal(0, 0.5, size=kv_cache.k[0].shape).astype(np.float32)
kv_cache.v[0][:] = rng_b.normal(0, 0.5, size=kv_cache.v[0].shape).astype(np.float32)
x1 = rng_b.normal(size=(1, 1, 512)).astype(np.float32)


def median_ms(step, S, repeats):
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        step(S)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times[1:]))  # the first call warms up


def mha_step(S):
    kv_cache.lengths[0] = S  # rewind: S positions cached before every call
    mha.forward(mha_p, x1, mha_cfg, np.array([S]), kv_cache=kv_cache, positional=registry.chosen("positional", mha_cfg))


def mla_step(impl):
    def step(S):
        lat_cache.lengths[0] = S
        mla.forward(mla_p, x1, mla_cfg, np.array([S]), kv_cache=lat_cache, impl=impl, positional=registry.chosen("positional", mla_cfg))
    return step


contexts = [128, 512, 2048]
timings = {"MHA": [], "MLA naive": [], "MLA absorbed": []}
with nn.no_grad():
    for S in contexts:
        timings["MHA"].append(median_ms(mha_step, S, 15))
        timings["MLA naive"].append(median_ms(mla_step("naive"), S, 5))
        timings["MLA absorbed"].append(median_ms(mla_step("absorbed"), S, 15))
print(f"{'cached':>8}" + "".join(f"{k:>14}" for k in timings) + f"{'naive/absorbed':>16}")
for k, S in enumerate(contexts):
    print(f"{S:>8}" + "".join(f"{v[k]:>11.2f} ms" for v in timings.values())
          + f"{timings['MLA naive'][k] / timings['MLA absorbed'][k]:>15.1f}x")
mla_figures.decode_time_vs_context({k: (contexts, v) for k, v in timings.items()})

# %% [markdown]
# The naive path grows fastest: its work per cached token is a full up-projection.
# The absorbed path stays close to the MHA cache while storing 3.6 times fewer
# numbers per token here (and 57 times fewer at V3's sizes). Timings on a shared
# machine are noisy; the benchmark reports the ratios at contexts up to 4096.

# %% [markdown]
# ## 7. Training with MHA and with MLA, side by side
#
# Two small models on the course corpus (the Python reference documentation),
# identical except for attention: 2 layers, $d$ = 64, 4 heads, RoPE, RMSNorm, a
# 512-token BPE vocabulary. The MLA model's latent ($d_c$ = 32) is a quarter of
# what MHA caches per token and layer ($2 n_h d_h$ = 128); its RoPE channel has
# $d_R$ = 8. Both train with the same loop and seed; MLA's backward is the naive
# path, gradient-checked like every other stage.

# %%
corpus = load_corpus("pydoc")
train_text, val_text = split_text(corpus)
tok = Tokenizer.train(train_text, 512)
train_ids = np.array(tok.encode(train_text[:200_000]))
val_ids = np.array(tok.encode(val_text[:40_000]))
mha_model_cfg = ours.replace(attention="mha", d_latent=None, d_rope=None)
runs, models = {}, {}
for label, cfg in (("MHA", mha_model_cfg), ("MLA", ours)):
    model = GPT(cfg, seed=0)
    trainer = Trainer(model, train_ids, val_ids, log=None,
                      config=TrainConfig(steps=250, batch_size=16, lr=3e-3, warmup=20, eval_every=125, eval_batches=4))
    t0 = time.perf_counter()
    state = trainer.run()
    runs[label], models[label] = state.losses, model
    kv = mla_accounting.kv_elements_per_token_layer(mla_accounting.AttentionSizes.from_config(cfg), cfg.attention)
    print(f"{label}: {model.num_params:,} parameters, {time.perf_counter() - t0:.1f} s, final validation loss "
          f"{state.evals[-1][1]:.3f}, cache {kv} numbers per token and layer")
mla_figures.loss_curves(runs, title="same model, MHA vs MLA attention (pydoc corpus)")

# %% [markdown]
# At this size and with this few steps the two curves nearly overlap: the latent
# bottleneck costs little here (DeepSeek-V2 §2.1 and Appendix D.2 report MLA
# matching or beating MHA at scale). The MLA model generates through its latent
# cache, and the absorbed decoding gives the same tokens as recomputing everything
# (same seed, same samples):

# %%
prompt = np.array([tok.encode("The ")])
mla_model = models["MLA"]
sampling = dict(temperature=0.8, top_k=20, seed=0)
cached = mla_model.generate(prompt, 40, **sampling)
recomputed = mla_model.generate(prompt, 40, use_cache=False, **sampling)
print("same tokens with and without the latent cache:", np.array_equal(cached, recomputed))
# a 130K-parameter model after 250 steps: the text is only locally plausible
print(repr(tok.decode(cached[0].tolist())))

# %% [markdown]
# ## 8. Pitfalls
#
# - **RoPE on the content channel** breaks absorption (section 4). Only $q^R$ and
#   $k^R$ rotate; $k^R$ is rotated *before* it is cached, at its absolute position,
#   and never again.
# - **The scale** is $1/\sqrt{d_h + d_R}$, the width of the whole query-key dot
#   product, not $1/\sqrt{d_h}$. Context extension (YaRN) multiplies it further
#   (`softmax_scale_mult` is where that goes).
# - **The latent norm** makes MLA non-linear in its input: MLA with $d_R = 0$ equals
#   an MHA of rank $\le d_c$ only with the norms off (tested in `tests/test_mla.py`).
# - **"Caching the latent" is not enough.** The Hugging Face port caches the
#   decompressed per-head keys and values (no saving); a latent cache that is
#   re-up-projected at every step saves memory but wastes compute. Absorption is
#   what gets both.
# - **Absorb for decoding, not for training.** With as many queries as keys, the
#   absorbed path does about 3.4 times more attention arithmetic.

# %% [markdown]
# ## 9. Exercises
#
# Each exercise has a stub and a check. A stub raises `NotImplementedError` and its
# check prints *not done yet*, so the notebook still runs top to bottom. Replace the
# stub, re-run the check, and aim for *passed*.
#
# - **core 1**: the cache of DeepSeek-V2-Lite.
# - **core 2**: absorbed scores of one head, by hand.
# - **stretch 3**: fold $W^{UV}$ into $W^O$.

# %%
def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# **Core 1.** DeepSeek-V2-Lite has 27 layers, 16 heads of 128, $d_c$ = 512,
# $d_R$ = 64 and no query compression. How many bytes per token does its MLA cache
# take in BF16 (2 bytes), over all layers? And how many would an MHA cache take?
# Compute them from the sizes, without `mla_accounting`.

# %%
def lite_cache_bytes():
    """Return (mla_bytes_per_token, mha_bytes_per_token) for DeepSeek-V2-Lite in BF16."""
    raise NotImplementedError  # your code here


def test_lite():
    mla, mha = lite_cache_bytes()
    assert mla == mla_accounting.kv_bytes_per_token(DEEPSEEK_V2_LITE, "mla"), "count c_KV and k_R, per layer"
    assert mha == mla_accounting.kv_bytes_per_token(DEEPSEEK_V2_LITE, "mha"), "a key and a value per head"


check("core 1 (V2-Lite cache)", test_lite)

# %% [markdown]
# **Core 2.** Write the content scores of head `i` the absorbed way: given its
# content queries `q_c` (T, Dh), the latents `c_kv` (S, Dc) and `W_UK` (Dc, H·Dh),
# return the (T, S) scores $q^C k^{C\top}$ *without* forming any key. The check
# compares with the naive product.

# %%
def absorbed_content_scores(q_c, c_kv, W_UK, i, d_head):
    raise NotImplementedError  # your code here


def test_absorbed_scores():
    r = np.random.default_rng(5)
    W_UK = r.normal(size=(24, 4 * 16))
    q_c, c_kv = r.normal(size=(3, 16)), r.normal(size=(7, 24))
    for i in range(4):
        k_c = c_kv @ W_UK[:, i * 16:(i + 1) * 16]  # the naive way: materialise the keys of head i
        assert np.allclose(absorbed_content_scores(q_c, c_kv, W_UK, i, 16), q_c @ k_c.T)


check("core 2 (absorbed scores)", test_absorbed_scores)

# %% [markdown]
# **Stretch 3.** The value side can be absorbed too: $W^{O}$ applied to the heads'
# $W^{UV}_i \bar o_i$ is one matrix $W^{O\prime}$ of shape (H·Dc, C) applied to the
# latent outputs $\bar o$ of all heads side by side. Build it from `p64` (our
# `W_UV` is (Dc, H·Dv), `W_O` is (H·Dv, C)), then check it against the absorbed
# forward's `hook_z_latent` (B, H, T, Dc). Why does DeepSeek's code *not* store this
# merged matrix? (Compare its size with the two factors at V3's sizes.)

# %%
def fold_value_into_output(params, H, Dc, Dv):
    raise NotImplementedError  # your code here


def test_fold():
    W = fold_value_into_output(p64, H, Dc, Dv)
    y, cc = mla.forward(p64, x64, ours, np.arange(40), impl="absorbed", need_cache=True, positional=registry.chosen("positional", ours))
    z_lat = cc["hook_z_latent"].transpose(0, 2, 1, 3).reshape(2, 40, H * Dc)  # (B, T, H·Dc)
    assert W.shape == (H * Dc, ours.d_model)
    assert np.allclose(z_lat @ W, y, atol=1e-8)


check("stretch 3 (fold W_UV into W_O)", test_fold)

# %% [markdown]
# ## 10. Further reading
#
# - DeepSeek-AI (2024). *DeepSeek-V2: A Strong, Economical, and Efficient
#   Mixture-of-Experts Language Model*, §2.1 (MLA, decoupled RoPE, Table 1 of cache
#   sizes), arXiv:2405.04434.
# - DeepSeek-AI (2024). *DeepSeek-V3 Technical Report*, §2.1.1, arXiv:2412.19437;
#   the reference inference code `inference/model.py` (class `MLA`, `attn_impl`
#   `"naive"` / `"absorb"`), and the FlashMLA README (decoding in "MQA mode").
# - C. Zhao et al. (2025). *Insights into DeepSeek-V3: Scaling Challenges and
#   Reflections on Hardware for AI Architectures*, ISCA, Table 1 (per-token cache
#   of V3 against Qwen-2.5 and LLaMA-3.1).
# - N. Shazeer (2019). *Fast Transformer Decoding: One Write-Head is All You Need*
#   (MQA); J. Ainslie et al. (2023). *GQA*.
# - S. Raschka, *LLMs from Scratch*, bonus chapter on MLA (a latent cache without
#   RoPE or absorption: the "re-up-project" path above).
#
# In the package: `minitransformer/attention/mla.py` (both paths, the cache, the
# backward), `attention/mla_accounting.py` (every number in this notebook), `figures/mla.py`,
# and `tests/test_mla.py` (the test plan).
