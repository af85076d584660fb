# Source of notebooks/04_attention_retrieval.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 04_attention`.

# %% [markdown]
# # Stage 4 · attention · *retrieval*
#
# Attention is where a position reads from the rest of the sequence. This
# notebook treats it as what it is: a lookup in a small database that every
# sentence builds for itself. We compute one by hand, check the library does
# the same, open the course model's attention on real text, find out what its
# heads retrieve and which ones matter, and measure the stored index that makes
# generation fast: the KV cache, and how grouped-query and multi-query attention
# shrink it.
#
# Everything runs offline, seeded, in a few seconds. Run the cells top to bottom.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import math
import time

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from minitransformer.core import registry
from minitransformer.attention import mha
from minitransformer.core import nn
from minitransformer import figures
from minitransformer.attention.kv_cache import KVCache
from minitransformer.cli import load_course_model
from minitransformer.concepts import stage
from minitransformer.core.config import ModelConfig
from minitransformer.training.data import load_corpus, split_text
from minitransformer.model import GPT

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small on the web
np.set_printoptions(precision=3, suppress=True)


model, tok, meta = load_course_model()  # data/course: trained by `minitransformer train`, see data/README.md
print(model)
print(f"validation loss when trained: {meta['extra']['val_loss']:.3f} nats/token "
      f"(unigram baseline {meta['extra']['unigram_baseline']:.3f})")

# %% [markdown]
# ## 1. The concept: retrieval
#
# A database answers a query by finding the record whose key matches and
# returning its value. Attention does the same, softly: every position issues a
# **query** (what it is looking for), every earlier position offers a **key**
# (how it can be found) and a **value** (what it holds), and the position
# retrieves a weighted mix of the values, weighted by how well each key matches
# its query. Nothing is looked up by exact match, so everything is
# differentiable, and the model learns which questions to ask. The pipeline's
# concept table says it in one place:

# %%
s = stage("attention")
print(f"stage {s.number}: {s.name}  ->  concept: {s.concept}")
print(f"question: {s.question}")
print(f"data: {s.data_in}  ->  {s.data_out}")
print()
print(s.summary)

# %% [markdown]
# ## 2. The mechanism
#
# For one head, with the queries, keys and values of the $T$ positions as rows
# of $Q, K, V \in \mathbb{R}^{T \times D}$ (projections $Q = XW_Q$, $K = XW_K$,
# $V = XW_V$ of the normalised residual stream $X$):
#
# $$
# \text{pattern} = \operatorname{softmax}\!\Big(\frac{QK^\top}{\sqrt{D}} + M\Big),
# \qquad
# M_{ij} = \begin{cases} 0 & j \le i \\ -\infty & j > i \end{cases},
# \qquad
# Z = \text{pattern}\; V .
# $$
#
# Row $i$ of the pattern is a probability distribution over the positions
# $j \le i$: how much of each value position $i$ retrieves. The mask $M$ makes
# the lookup **causal**: a position never reads the future, which is what lets
# the model be trained on every position of a text at once. With $H$ heads the
# same happens $H$ times in parallel with different projections, and the heads'
# findings are concatenated and mixed back into the stream by $W_O$.

# %% [markdown]
# ## 3. By hand: a database of two records
#
# Two records with keys $k_0 = (1, 0)$ and $k_1 = (0, 1)$ and values
# $v_0 = (10, 0)$ and $v_1 = (0, 10)$, and two queries: $q_0 = (2, 0)$ looks for
# something like $k_0$; $q_1 = (1, 1)$ matches both equally. With $D = 2$ the
# scale is $1/\sqrt{2}$.

# %%
K = np.array([[1.0, 0.0], [0.0, 1.0]])
V = np.array([[10.0, 0.0], [0.0, 10.0]])
Q = np.array([[2.0, 0.0], [1.0, 1.0]])

scores = Q @ K.T / math.sqrt(2)  # (2 queries, 2 keys)
pattern = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
print("scores =\n", scores)
print("pattern (no mask) =\n", pattern)
print("retrieved (no mask) =\n", pattern @ V)

# %% [markdown]
# Query 0 retrieves mostly record 0 (80 %), but not only: a soft lookup always
# blends. Query 1 matches both keys equally and gets the average. Now the causal
# mask: if the records are the two positions of a sequence and the queries are
# issued by the same positions, position 0 may only read itself.

# %%
M = np.array([[0.0, -np.inf], [0.0, 0.0]])  # -inf above the diagonal: the future
masked = scores + M
causal = np.exp(masked) / np.exp(masked).sum(axis=1, keepdims=True)  # exp(-inf) = 0
print("pattern (causal) =\n", causal)
print("retrieved (causal) =\n", causal @ V)

# %% [markdown]
# The library computes exactly this. With the two positions' inputs set to the
# rows of the identity matrix, the projections $XW_Q$, $XW_K$, $XW_V$ are the
# weight matrices themselves, so choosing $W_Q = Q$, $W_K = K$, $W_V = V$ (and
# $W_O = I$) turns `mha.forward` into our hand computation.

# %%
cfg2 = ModelConfig(vocab_size=4, context_length=4, d_model=2, n_layers=1, n_heads=1, bias=False)
params2 = {"W_Q": Q.astype(np.float32), "W_K": K.astype(np.float32), "W_V": V.astype(np.float32),
           "W_O": np.eye(2, dtype=np.float32)}
x = np.eye(2, dtype=np.float32)[None]  # (B=1, T=2, C=2)
y, cache2 = mha.forward(params2, x, cfg2, positions=np.arange(2), need_cache=True, positional=registry.chosen("positional", cfg2))
print("mha.forward:\n", y[0])
assert np.allclose(y[0], causal @ V, atol=1e-5)
assert np.allclose(cache2["hook_pattern"][0, 0], causal, atol=1e-6)

# %% [markdown]
# ## 4. The course model's cache
#
# `run_with_cache` runs the model once and keeps every activation under a
# published name (`docs/hooks.md`). For attention, `blocks.{i}.attn.hook_q/k/v`
# are the queries, keys and values, `hook_attn_scores` the scaled scores with
# $-\infty$ on the future, `hook_pattern` the softmax, `hook_z` what each head
# retrieved. `cache["pattern", 0]` is shorthand for `blocks.0.attn.hook_pattern`.

# %%
text = "The return statement leaves the current function call with the expression list"
ids = np.array([tok.encode_ordinary(text)])
labels = [tok.decode([i]) for i in ids[0]]
logits, cache = model.run_with_cache(ids)
print(f"{ids.shape[1]} tokens: {labels}\n")
for name in cache:
    if name.startswith("blocks.0.attn."):
        print(f"{name:<32} {cache[name].shape}")

# %% [markdown]
# The scores of head 0 in layer 0, for the first five positions: the future is
# $-\infty$, so after the softmax it gets exactly zero, and every row of the
# pattern sums to one.

# %%
c = model.config
print("scores[:5, :5] =\n", cache["scores", 0][0, 0, :5, :5])
print("pattern[:5, :5] =\n", cache["pattern", 0][0, 0, :5, :5])
print("row sums:", cache["pattern", 0][0, 0].sum(axis=-1)[:5])
# the stored q and k give the same scores (the model scales q by 1/sqrt(D) before the product)
q, k = cache["q", 0][0, 0], cache["k", 0][0, 0]  # (T, D)
assert np.allclose(np.tril(q @ k.T / math.sqrt(c.d_head)), np.tril(cache["scores", 0][0, 0]), atol=1e-4)

# %% [markdown]
# ## 5. Seeing the lookups
#
# Every head of every layer, with the query positions down and the key positions
# across (spaces shown as `␣`). Dark cells are what a position retrieves; each
# row sums to one. The heads differ: some stay near the diagonal (the latest
# tokens), some reach back to particular earlier words.

# %%
patterns = np.stack([cache["pattern", i][0] for i in range(c.n_layers)])  # (L, H, T, T)
figures.attention_patterns(patterns, labels, title="course model: attention patterns on one sentence")

# %% [markdown]
# ## 6. What does each head retrieve?
#
# One sentence is anecdote. Over 16 windows of held-out text we measure, for
# every head, where its weight goes on average: to the position itself, to the
# previous token, to the first token of the window, and how far back it reads
# (the expected distance $\sum_j p_{ij}\,(i - j)$). The last row is a head that
# would spread its weight evenly over the past, for comparison.

# %%
_, val_text = split_text(load_corpus("pydoc"))
val_ids = np.array(tok.encode_ordinary(val_text))
T = c.context_length
windows = val_ids[: 16 * T + 1]
xb, yb = windows[:-1].reshape(16, T), windows[1:].reshape(16, T)
_, vcache = model.run_with_cache(xb, names_filter=lambda n: n.endswith("hook_pattern"))

offsets = np.arange(T)[:, None] - np.arange(T)[None, :]  # (T, T): i - j, how far back key j is
uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]  # (T, T): even weight over the past


def profile(p):
    """Mean weight on self, previous, first token, and mean distance; p (..., T, T), query 0 skipped."""
    p = p[..., 1:, :]  # query 0 can only read itself
    return (np.mean(np.diagonal(p, offset=1, axis1=-2, axis2=-1)), np.mean(np.diagonal(p, axis1=-2, axis2=-1)),
            np.mean(p[..., 0]), np.mean((p * offsets[1:]).sum(axis=-1)))


print(f"{'head':<9}{'self':>7}{'prev':>7}{'first':>7}{'distance':>10}")
by_distance = np.zeros((c.n_layers, c.n_heads, 16))  # mean weight on the key d positions back, d < 16
for i in range(c.n_layers):
    for h in range(c.n_heads):
        ph = vcache["pattern", i][:, h]  # (B, T, T)
        print(f"L{i}H{h:<6}" + "".join(f"{v:>7.2f}" for v in profile(ph)[:3]) + f"{profile(ph)[3]:>10.1f}")
        by_distance[i, h] = [np.mean(np.diagonal(ph, offset=-d, axis1=1, axis2=2)[:, 16:]) for d in range(16)]
print(f"{'uniform':<9}" + "".join(f"{v:>7.2f}" for v in profile(uniform)[:3]) + f"{profile(uniform)[3]:>10.1f}")

# %% [markdown]
# Every head reads much closer than the uniform head (an average distance well
# below its 32 positions), so all of them favour the recent past, each with its
# own profile. Drawn by distance (for queries at position 16 or later, so that every
# distance up to 15 exists):

# %%
fig = Figure(figsize=(2.3 * c.n_layers + 0.5, 2.6))
axes = fig.subplots(1, c.n_layers, sharey=True)
for i, ax in enumerate(axes):
    for h in range(c.n_heads):
        ax.plot(range(16), by_distance[i, h], marker="o", ms=2, lw=1, label=f"H{h}")
    ax.axhline(np.mean(uniform[16:, 0]), color="gray", ls="--", lw=0.8)  # what an even spread gives one key
    ax.set_yscale("log")
    ax.set_title(f"layer {i}", fontsize=9)
    ax.set_xlabel("distance back (0 = itself)", fontsize=8)
axes[0].set_ylabel("mean weight")
axes[-1].legend(fontsize=7)
fig.suptitle("where the heads look, by distance (dashed: an even spread)", fontsize=10)
fig.tight_layout()
fig

# %% [markdown]
# Averages hide what a head does on a particular text. For each head of the last
# layer, what the last token of our sentence retrieves most:

# %%
last = len(labels) - 1
L = c.n_layers - 1
for h in range(c.n_heads):
    row = cache["pattern", L][0, h, last]
    top = np.argsort(-row)[:3]
    found = ", ".join(f"{labels[j]!r} at {j} ({row[j]:.0%})" for j in top)
    print(f"L{L}H{h}: {labels[last]!r} retrieves {found}")

# %% [markdown]
# ## 7. Which heads matter? Ablation
#
# To find out what a head contributes, remove it and measure the damage.
# `run_with_hooks` runs the model with a function applied to a named activation;
# on `blocks.{i}.attn.hook_z`, shape (B, T, H, D), zeroing head $h$'s slice
# removes everything that head retrieved. The loss on the held-out windows,
# with each of the 16 heads removed in turn:

# %%
def loss_of(logits):
    return nn.cross_entropy_forward(logits, yb)[0]


def ablate(*heads):
    """A hook for hook_z (B, T, H, D) that removes what the given heads retrieved."""
    def hook(z):
        z = z.copy()
        z[:, :, list(heads)] = 0.0
        return z
    return hook


base_loss = loss_of(model.forward(xb))
damage = np.zeros((c.n_layers, c.n_heads))
for i in range(c.n_layers):
    for h in range(c.n_heads):
        damage[i, h] = loss_of(model.run_with_hooks(xb, {f"blocks.{i}.attn.hook_z": ablate(h)})) - base_loss
print(f"loss with every head: {base_loss:.3f} nats/token")

fig = Figure(figsize=(4.5, 3.2))
ax = fig.add_subplot()
im = ax.imshow(damage, cmap="Reds", vmin=0)
for (i, h), d in np.ndenumerate(damage):
    ax.text(h, i, f"{d:+.2f}", ha="center", va="center", fontsize=8, color="white" if d > damage.max() / 2 else "black")
ax.set_xticks(range(c.n_heads), [f"H{h}" for h in range(c.n_heads)])
ax.set_yticks(range(c.n_layers), [f"L{i}" for i in range(c.n_layers)])
ax.set_title("loss increase when one head is removed")
fig.colorbar(im, ax=ax, label="nats/token")
fig.tight_layout()
fig

# %%
order = np.argsort(-damage, axis=None)
print("most important heads:", ", ".join(f"L{i}H{h} (+{damage[i, h]:.2f})" for i, h in
                                       (np.unravel_index(k, damage.shape) for k in order[:3])))
top_two = [np.unravel_index(k, damage.shape) for k in order[:2]]
hooks = {}
for i in {int(i) for i, _ in top_two}:  # one hook per layer, removing that layer's chosen heads
    hooks[f"blocks.{i}.attn.hook_z"] = ablate(*[int(h) for j, h in top_two if j == i])
print(f"the top two removed together: +{loss_of(model.run_with_hooks(xb, hooks)) - base_loss:.2f} nats/token")

# %% [markdown]
# ## 8. The stored index: the KV cache, and sharing it (GQA, MQA)
#
# When the model generates, each new token needs the keys and values of every
# earlier position, in every layer. Recomputing them is $O(T^2)$ per token;
# keeping them is the **KV cache**, the stored index of the retrieval, and it
# makes each new token cost one query against $T$ stored keys. Its size per
# token is
#
# $$
# \text{bytes per token} = 2 \,(\text{K and V}) \times L \times G \times D \times \text{bytes per number},
# $$
#
# with $G$ the number of key/value heads. **Grouped-query attention** (GQA) lets
# groups of query heads share one key/value head ($G < H$); **multi-query
# attention** (MQA) shares one among all ($G = 1$). The queries stay as many as
# before; only the stored index shrinks. Measured with `KVCache.nbytes` after a
# prompt of 100 tokens, on the course model's shape:

# %%
prompt = np.array([val_ids[:100]])
print(f"{'variant':<24}{'G':>3}{'cache bytes':>13}{'bytes/token':>13}{'formula':>9}")
per_token = {}
for G, label in [(4, "multi-head (H = 4)"), (2, "grouped-query (G = 2)"), (1, "multi-query (G = 1)")]:
    cfg = c.replace(n_kv_heads=G)
    kv = KVCache.for_config(cfg)
    GPT(cfg, seed=0).forward(prompt, kv_cache=kv)  # the prefill fills the cache
    formula = 2 * cfg.n_layers * G * cfg.d_head * 4  # float32: 4 bytes
    per_token[label] = kv.nbytes / kv.length
    print(f"{label:<24}{G:>3}{kv.nbytes:>13,}{kv.nbytes // kv.length:>13,}{formula:>9,}")
    assert kv.nbytes == formula * kv.length

# %% [markdown]
# A few kilobytes per token is nothing. The same formula for a model of the
# shape of Llama 2 7B (32 layers, 32 heads of width 128, 16-bit numbers) gives
# half a mebibyte per token, so a 4,096-token context needs 2 GiB of cache per
# sequence; grouped-query attention with 8 key/value heads needs a quarter of it.

# %%
big = {f"{label}, G = {G}": 2 * 32 * G * 128 * 2
       for G, label in [(32, "multi-head"), (8, "grouped-query"), (1, "multi-query")]}
for label, b in big.items():
    print(f"{label:<26} {b / 1024:>6.0f} KiB/token, {4096 * b / 2**30:.3f} GiB at 4,096 tokens")
figures.kv_cache_size(big, [256, 512, 1024, 2048, 4096], title="KV cache of a Llama-2-7B-shaped model (float16)")

# %% [markdown]
# The cache changes the cost, never the result: generating with it and
# recomputing everything at each step give the same tokens.

# %%
p_ids = np.array([tok.encode_ordinary("The return statement")])
t0 = time.perf_counter()
with_cache = model.generate(p_ids, 60, temperature=0.8, top_k=40, seed=0, use_cache=True)
t_cache = time.perf_counter() - t0
t0 = time.perf_counter()
without = model.generate(p_ids, 60, temperature=0.8, top_k=40, seed=0, use_cache=False)
t_none = time.perf_counter() - t0
assert np.array_equal(with_cache, without)
print(f"same 60 tokens; with the cache {t_cache * 1e3:.0f} ms, recomputing {t_none * 1e3:.0f} ms")
print(repr(tok.decode(with_cache[0].tolist())))

# %% [markdown]
# ## 9. Pitfalls
#
# - **Forgetting the $1/\sqrt{D}$.** The dot product of two random vectors of
#   width $D$ has a standard deviation of about $\sqrt{D}$, so without the scale
#   the softmax saturates: one key gets nearly all the weight, and the gradient
#   through the others vanishes (see the cell below).
# - **Masking after the softmax.** Zeroing future weights after the softmax
#   leaves rows that no longer sum to one; the mask must be $-\infty$ *before*.
# - **Reading weights as importance.** A large attention weight on the first
#   token may be a sink that retrieves nothing useful; ablation (section 7)
#   measures what a head does, the pattern only where it looks.
# - **Zero versus mean ablation.** Zeroing a head also moves the stream away
#   from anything the model ever saw; replacing it by its mean output is gentler.
#   Both are used in interpretability work, and they can disagree.
# - **Shapes.** The cache stores attention head-major, (B, H, T, D), but
#   `hook_z` is (B, T, H, D), as in TransformerLens; with GQA, `hook_k` and
#   `hook_v` have G heads, not H.

# %%
rng = np.random.default_rng(0)
D = 64
q, k = rng.normal(size=D), rng.normal(size=(10, D))
for label, s in [("with 1/sqrt(D)", k @ q / math.sqrt(D)), ("without", k @ q)]:
    w = nn.softmax(s)
    print(f"{label:<15} score std {s.std():5.2f}, largest weight {w.max():.2f}")

# %% [markdown]
# ## 10. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`
# (or leaves `None`), and its check prints *not done yet*, so the notebook still
# runs top to bottom. Replace the stub, re-run the check, and aim for *passed*; a
# wrong answer fails loudly with an `AssertionError`. Worked solutions are in
# `notebooks/solutions/04_attention_retrieval_solutions.ipynb`.
#
# - **core 1**: causal attention for one head, checked on the course model's own cache.
# - **core 2**: predict the size of a KV cache.
# - **optional 3**: multi-query attention from scratch, checked against `mha.forward`.
# - **stretch 4**: sliding-window attention.

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
# **Core 1.** Write `my_causal_attention(q, k, v)` for one head: `q`, `k`, `v`
# are (T, D); return the pattern (T, T) and what each position retrieved, (T, D).
# The check feeds it the course model's stored queries, keys and values of every
# head and compares with the stored `hook_pattern` and `hook_z`.

# %%
def my_causal_attention(q, k, v):
    raise NotImplementedError  # your code here: return pattern, z


def test_my_causal_attention():
    q, k, v = cache["q", 0][0, 0], cache["k", 0][0, 0], cache["v", 0][0, 0]  # one head of the course model
    T, D = q.shape
    result = my_causal_attention(q, k, v)
    assert result is not None, "my_causal_attention returned None: end it with `return pattern, z`"
    assert isinstance(result, tuple) and len(result) == 2, (
        f"return two arrays, `return pattern, z`; got {type(result).__name__}")
    pattern, z = np.asarray(result[0]), np.asarray(result[1])
    assert not (pattern.shape == (T, D) and z.shape == (T, T)), (
        "pattern and z are swapped: return the pattern (T, T) first, then z (T, D)")
    assert pattern.shape == (T, T), f"the pattern has shape {pattern.shape}; expected (T, T) = {(T, T)}"
    assert z.shape == (T, D), f"z has shape {z.shape}; expected (T, D) = {(T, D)}"
    assert np.allclose(pattern.sum(axis=-1), 1.0, atol=1e-5), (
        "each row of the pattern must sum to 1: a softmax over the keys (the last axis)")
    pattern, z = my_causal_attention(K, V, V)  # 2 positions: position 0 can only read itself
    assert np.allclose(pattern[0], [1.0, 0.0]), "position 0 may only read itself: mask the future"
    for i in range(c.n_layers):
        for h in range(c.n_heads):
            q, k, v = cache["q", i][0, h], cache["k", i][0, h], cache["v", i][0, h]
            pattern, z = my_causal_attention(q, k, v)
            assert np.allclose(pattern, cache["pattern", i][0, h], atol=1e-5), f"pattern of L{i}H{h}"
            assert np.allclose(z, cache["z", i][0, :, h], atol=1e-4), f"z of L{i}H{h} (hook_z is (B, T, H, D))"

check("core 1 (my_causal_attention)", test_my_causal_attention)

# %% [markdown]
# **Core 2.** Predict, then check; no computing first. After a prompt of 100
# tokens, how many bytes does the KV cache of the course model hold (4 layers, 4
# heads of width 32, float32)? And a version of it with multi-query attention,
# after 128 tokens?

# %%
guess_course_bytes = None  # replace None by your number
guess_mqa_bytes = None


def test_predict_cache():
    if guess_course_bytes is None or guess_mqa_bytes is None:
        raise NotImplementedError
    kv = KVCache.for_config(c)
    model.forward(prompt, kv_cache=kv)
    assert guess_course_bytes == kv.nbytes, "2 (K and V) x layers x kv heads x head width x 4 bytes, per token"
    mqa = c.replace(n_kv_heads=1)
    kv = KVCache.for_config(mqa)
    GPT(mqa, seed=0).forward(np.array([val_ids[:128]]), kv_cache=kv)
    assert guess_mqa_bytes == kv.nbytes, "one key/value head instead of four"


check("core 2 (predict the cache size)", test_predict_cache)

# %% [markdown]
# **Optional 3.** Write multi-query attention from scratch:
# `my_mqa(params, x, n_heads)` for `x` (B, T, C), with `params` as
# `mha.init` makes them for `n_kv_heads=1`: `W_Q` (C, H·D), `W_K` and
# `W_V` (C, D), `W_O` (H·D, C) and the biases `b_Q`, `b_K`, `b_V`, `b_O`. Every
# query head uses the one key head and the one value head. Return y (B, T, C).
# The check compares it with `mha.forward`.

# %%
def my_mqa(params, x, n_heads):
    raise NotImplementedError  # your code here


def test_my_mqa():
    cfg = ModelConfig.preset("toy", n_kv_heads=1)
    rng = np.random.default_rng(1)
    params = mha.init(cfg, rng)
    params = {n: (a + rng.normal(0, 0.02, a.shape)).astype(np.float32) for n, a in params.items()}  # non-zero biases
    x = rng.normal(size=(2, 7, cfg.d_model)).astype(np.float32)
    expected, _ = mha.forward(params, x, cfg, positions=np.arange(7), positional=registry.chosen("positional", cfg))
    mine = my_mqa(params, x, cfg.n_heads)
    assert mine is not None, "my_mqa returned None: end it with `return y`"
    mine = np.asarray(mine)
    assert mine.shape == expected.shape, f"y has shape {mine.shape}; expected (B, T, C) = {expected.shape}"
    assert np.allclose(mine, expected, atol=1e-5), f"max difference {np.abs(mine - expected).max():.2e}"


check("optional 3 (my_mqa)", test_my_mqa)

# %% [markdown]
# **Stretch 4.** Sliding-window attention (Mistral, Longformer) lets each
# position read only itself and the `window - 1` positions before it, so the
# cache never holds more than `window` positions. Write
# `my_window_attention(q, k, v, window)` for one head, (T, D) arrays, returning
# z (T, D). The check compares it with a slow loop for windows of 1, 3 and 12
# (the whole sequence, where it is plain causal attention).

# %%
def my_window_attention(q, k, v, window):
    raise NotImplementedError  # your code here


def test_my_window_attention():
    rng = np.random.default_rng(2)
    q, k, v = rng.normal(size=(3, 12, 8))
    for window in [1, 3, 12]:
        expected = np.zeros((12, 8))
        for i in range(12):
            js = range(max(0, i - window + 1), i + 1)
            s = np.array([q[i] @ k[j] / math.sqrt(8) for j in js])
            w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            expected[i] = sum(wj * v[j] for wj, j in zip(w, js))
        z = my_window_attention(q, k, v, window)
        assert z is not None, "my_window_attention returned None: end it with `return z`"
        assert np.shape(z) == (12, 8), f"z has shape {np.shape(z)}; expected (T, D) = (12, 8)"
        assert np.allclose(z, expected, atol=1e-8), f"window {window}"
    assert np.allclose(my_window_attention(q, k, v, 1), v), "a window of 1 reads only the position itself"


check("stretch 4 (my_window_attention)", test_my_window_attention)

# %% [markdown]
# ## 11. Further reading
#
# - Ashish Vaswani et al. (2017). *Attention Is All You Need.* NeurIPS.
#   Scaled dot-product and multi-head attention (arXiv:1706.03762).
# - Dzmitry Bahdanau, Kyunghyun Cho, Yoshua Bengio (2015). *Neural Machine
#   Translation by Jointly Learning to Align and Translate.* ICLR. Attention as
#   soft alignment (arXiv:1409.0473).
# - Aston Zhang et al., *Dive into Deep Learning*, chapter "Attention Mechanisms
#   and Transformers": queries, keys and values as a database (d2l.ai).
# - Noam Shazeer (2019). *Fast Transformer Decoding: One Write-Head is All You
#   Need.* Multi-query attention (arXiv:1911.02150).
# - Joshua Ainslie et al. (2023). *GQA: Training Generalized Multi-Query
#   Transformer Models from Multi-Head Checkpoints* (arXiv:2305.13245).
# - Nelson Elhage et al. (2021). *A Mathematical Framework for Transformer
#   Circuits* (transformer-circuits.pub): heads as readers and writers of the
#   residual stream; previous-token and induction heads.
# - Guangxuan Xiao et al. (2023). *Efficient Streaming Language Models with
#   Attention Sinks* (arXiv:2309.17453).
#
# In the package: `minitransformer/attention/mha.py` (forward, backward, the
# grouping trick for GQA), `attention/kv_cache.py` (the KV cache),
# `trace/cache.py` (`run_with_cache`, `run_with_hooks`) and `docs/hooks.md`
# (every activation name).
