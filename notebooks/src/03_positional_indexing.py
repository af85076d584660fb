# Source of notebooks/03_positional_indexing.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 03_positional`.

# %% [markdown]
# # Stage 3 · positional encoding · *indexing*
#
# "The dog bites the man" and "the man bites the dog" hold the same tokens.
# Attention compares vectors without asking where they stand, so without help
# it cannot tell the two apart. This notebook shows that blindness exactly (on
# hand-sized arrays and in the course model's cache), then the three ways the
# pipeline gives each position an address: a learned vector per position (what
# the course model uses), the fixed sinusoidal code, and rotary embeddings
# (RoPE), whose dot products depend only on the distance between positions.
#
# Everything runs offline in a few seconds. Run the cells top to bottom.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from minitransformer import positional
from minitransformer.core import nn
from minitransformer import figures
from minitransformer.cli import load_course_model
from minitransformer.concepts import stage
from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small and readable on the web
np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## 1. The concept: indexing
#
# A database keeps its records in a table, but a record's content does not say
# where it is: the index does. Ask for "row 17" or "the record two before this
# one" and the index answers. Positional encoding is the index of a sequence:
# it gives every position an address that the model can match on, either an
# absolute one ("I am position 17") or a relative one ("you are two before
# me"). The pipeline's concept table:

# %%
s = stage("positional")
print(f"stage {s.number}: {s.name}  ->  concept: {s.concept}")
print(f"question: {s.question}")
print(f"data: {s.data_in}  ->  {s.data_out}")
print()
print(s.summary)

# %% [markdown]
# ## 2. The mechanism: why attention needs an index
#
# Attention of a sequence $X \in \mathbb{R}^{T \times C}$ is
# $\operatorname{Attn}(X) = \operatorname{softmax}\big(X W_Q (X W_K)^\top / \sqrt{d}\big)\, X W_V$.
# Permute the rows with a permutation matrix $P$: every query, key and value is
# permuted the same way, the score matrix becomes $P S P^\top$, the softmax works
# row by row, and
#
# $$
# \operatorname{Attn}(P X) = P \operatorname{Attn}(X),
# $$
#
# the same outputs in the permuted order (*permutation equivariance*): order
# carries no information. The three fixes:
#
# - **learned** (GPT-2): $x_i \leftarrow x_i + W_{pos}[i]$, a trained row per position;
# - **sinusoidal** (Vaswani et al.): $x_i \leftarrow x_i + PE[i]$ with
#   $PE[i, 2k] = \sin(i\,\theta_k)$, $PE[i, 2k+1] = \cos(i\,\theta_k)$,
#   $\theta_k = 10000^{-2k/C}$;
# - **RoPE** (Su et al.): leave $x$ alone, and inside attention rotate each pair of
#   dimensions of $q_m$ and $k_n$ by the angles $m\theta_k$ and $n\theta_k$. Rotations
#   compose, $R_m^\top R_n = R_{n-m}$, so
#   $$\langle R_m q,\ R_n k \rangle = \langle q,\ R_{n-m}\, k\rangle,$$
#   a score that depends on the positions only through their distance $n - m$.

# %% [markdown]
# ## 3. By hand: 6 tokens × 3 dimensions
#
# One attention head on a six-token sequence with random weights, computed
# directly, then on the same rows in another order.

# %%
rng = np.random.default_rng(0)
X = rng.normal(size=(6, 3))  # (T, C) = (6, 3): six token vectors, no positions
W_Q, W_K, W_V = (rng.normal(size=(3, 3)) for _ in range(3))


def attend(X, causal=False, bias=None):
    """One head: softmax(q k^T / sqrt(d) [+ bias] [+ causal mask]) v.  (T, C) -> (T, C)."""
    scores = (X @ W_Q) @ (X @ W_K).T / np.sqrt(3)  # (T, T)
    if bias is not None:
        scores = scores + bias
    if causal:
        scores = np.where(np.tril(np.ones_like(scores, dtype=bool)), scores, -np.inf)
    return nn.softmax(scores) @ (X @ W_V)  # (T, T) @ (T, C) -> (T, C)


perm = np.array([3, 0, 5, 1, 4, 2])
print("no mask:  Attn(X[perm]) == Attn(X)[perm]?", np.allclose(attend(X[perm]), attend(X)[perm]))
print("causal:   Attn(X[perm]) == Attn(X)[perm]?", np.allclose(attend(X[perm], causal=True), attend(X, causal=True)[perm]))
perm_prefix = np.array([2, 0, 4, 1, 3, 5])  # shuffle the first five, keep the last in place
same_last = np.allclose(attend(X[perm_prefix], causal=True)[-1], attend(X, causal=True)[-1])
print("causal, last position, earlier tokens shuffled: same output?", same_last)

# %% [markdown]
# Without a mask the outputs are the same up to the order. With the causal mask
# the prefix a position sees changes when the order changes, so the outputs
# differ, but the **last** position, which sees everything, cannot tell how the
# tokens before it were ordered: its retrieval is a weighted average over a
# *set*. Now add a position code and the blindness is gone:

# %%
PE = positional.sinusoidal_table(6, 4)[:, :3].astype(np.float64)  # (T, 3): a position code (see section 5)
with_pos = attend(X[perm_prefix] + PE, causal=True)[-1], attend(X + PE, causal=True)[-1]
print("with positions added, last position, earlier tokens shuffled: same output?", np.allclose(*with_pos))

# %% [markdown]
# ## 4. The course model without its index
#
# The course model learned its positions ($W_{pos}$, one row of 128 numbers per
# position). Take its trained weights, drop $W_{pos}$ (`positional="none"`),
# and feed it a sentence and the same sentence with every token but the last
# shuffled. Layer 0's retrieval at the last position (`hook_z`) is then
# identical: the model cannot tell the orders apart. With $W_{pos}$ back, it can.

# %%
model, tok, meta = load_course_model()
nopos = GPT(model.config.replace(positional="none"), params={**model.params, "pos": {}})
print(model)
print(nopos)

sentence = "The return statement leaves the current function call with"
ids = np.array([tok.encode(sentence)])  # (1, T)
T = ids.shape[1]
order = np.r_[np.random.default_rng(1).permutation(T - 1), T - 1]  # shuffle all but the last token
shuffled = ids[:, order]
print("\noriginal:", repr(tok.decode(ids[0].tolist())))
print("shuffled:", repr(tok.decode(shuffled[0].tolist())))

for name, m in [("no positions", nopos), ("learned positions", model)]:
    _, c1 = m.run_with_cache(ids)
    _, c2 = m.run_with_cache(shuffled)
    dz = np.abs(c1["z", 0][0, -1] - c2["z", 0][0, -1]).max()
    dp = np.abs(c1["pattern", 0][0, :, -1][:, order] - c2["pattern", 0][0, :, -1]).max()
    dlogit = np.abs(c1["logits"][0, -1] - c2["logits"][0, -1]).max()
    print(f"{name:>18}: layer-0 last-position z differs by {dz:.1e}, its pattern row (re-ordered) by {dp:.1e};"
          f" final logits by {dlogit:.2f}")

# %% [markdown]
# Without positions, layer 0 is blind to the order, up to float rounding. The
# final logits still change: from layer 1 on, the keys of earlier positions
# come from *their* prefixes, and the causal mask makes those depend on the
# order. That signal is real (models trained without positions learn to use it,
# Haviv et al. 2022), but it is indirect: it is not an address that a query can
# match on, and this model, trained with $W_{pos}$, was never taught to read it.

# %% [markdown]
# ## 5. Learned against sinusoidal positions
#
# The course model's $W_{pos}$ is in its cache as `hook_pos_embed` (the rows for
# the positions used). Here is all of it, next to the fixed sinusoidal code of
# the same shape. (`figures.positional_heatmap` draws the sinusoidal and RoPE
# codes; the learned table is drawn here directly.)

# %%
_, cache = model.run_with_cache(ids)
W_pos = model.params["pos"]["W_pos"]  # (context_length, C) = (128, 128)
assert np.array_equal(cache["pos_embed"], W_pos[:T])
print("hook_pos_embed:", cache["pos_embed"].shape, "== W_pos[:T]; W_pos:", W_pos.shape)

fig = Figure(figsize=(6, 3.2), layout="constrained")
ax = fig.add_subplot()
lim = np.percentile(np.abs(W_pos), 99)  # a few large entries would wash out the colours
im = ax.imshow(W_pos, aspect="auto", cmap="RdBu", vmin=-lim, vmax=lim, interpolation="nearest")
fig.colorbar(im, ax=ax)
ax.set_xlabel("dimension")
ax.set_ylabel("position")
ax.set_title("learned positions: the course model's W_pos")
fig

# %%
sin_config = model.config.replace(positional="sinusoidal")
figures.positional_heatmap(sin_config, model.config.context_length)

# %% [markdown]
# The sinusoidal columns are clocks: the first ones turn fast (a full turn every
# few positions), the last ones so slowly they barely change over 128 positions.
# Binary counting does the same with bits: the lowest bit flips every step, the
# next every two steps, and so on. The sinusoidal code is a smooth version, in
# which nearby positions get nearby vectors.

# %%
P = 16
bits = positional.binary_positions(P, 4)  # (P, 4), least significant bit first
sin_cols = positional.sinusoidal_table(P, 16)[:, 0::2][:, :4]  # (P, 4): sin of the four fastest clocks
fig = Figure(figsize=(6, 3), layout="constrained")
for k, (data, title, cmap) in enumerate([(bits, "binary digits of the position", "Greys"),
                                         (sin_cols, "sinusoidal sin columns (C = 16)", "RdBu")]):
    ax = fig.add_subplot(1, 2, k + 1)
    ax.imshow(data, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xticks(range(4))
    ax.set_xlabel("column (fast -> slow)")
    ax.set_ylabel("position")
    ax.set_title(title, fontsize=9)
print("positions 0..7 in binary (LSB first):\n", bits[:8])
fig

# %% [markdown]
# What matters to attention is how similar two positions' vectors are. For the
# sinusoidal code the similarity falls off smoothly with distance and depends
# only on it (both curves coincide). The learned table was free to be anything;
# training made its similarity fall with distance too (more coarsely, and not
# the same from every reference position): a code for "near" that nobody wrote
# down.

# %%
figures.similarity_vs_distance(positional.sinusoidal_table(128, 128), title="sinusoidal: similarity against distance")

# %%
figures.similarity_vs_distance(W_pos, title="learned W_pos: similarity against distance")

# %% [markdown]
# ## 6. RoPE: positions as rotations
#
# RoPE adds nothing to the residual stream. Inside attention it splits a head's
# $D$ dimensions into $D/2$ pairs and rotates pair $k$ of the query at position
# $m$ by the angle $m\theta_k$ (and the key at $n$ by $n\theta_k$). Each pair is
# a clock hand: pair 0 spins by one radian per position, the last pair barely moves.

# %%
figures.rope_rotations([0, 1, 2, 3, 4, 5], d_head=8)

# %% [markdown]
# The relative property, checked with numbers: rotate one query and one key to
# many position pairs $(m, n)$ and compare the scores. Pairs with the same
# distance $n - m$ give the same score, wherever they are.

# %%
rng = np.random.default_rng(0)
D = 32
q, k = rng.normal(size=(1, D)), rng.normal(size=(1, D))  # one query and one key, float64


def rotated(x, pos):
    cos, sin = positional.rope_angles(np.array([pos]), D)
    return positional.rope_apply(x, cos.astype(np.float64), sin.astype(np.float64), "half")[0]


for m, n in [(0, 3), (10, 13), (100, 103), (5, 5), (70, 70), (9, 2), (50, 43)]:
    print(f"m={m:3d} n={n:3d}  n-m={n - m:3d}  score {rotated(q, m) @ rotated(k, n):+.6f}")

scores = np.array([[rotated(q, m) @ rotated(k, n) for n in range(40)] for m in range(40)])  # (40, 40)
diagonals = [np.ptp(np.diagonal(scores, offset=d)) for d in range(-39, 40)]
print(f"\nover all 40 x 40 pairs, the largest spread of scores at one distance: {max(diagonals):.1e}")

# %% [markdown]
# A model with `positional="rope"` records both versions in its cache:
# `hook_q` before the rotation and `hook_rot_q` after. The course model uses
# learned positions, so here an untrained `tiny` model with RoPE shows the
# names; the rotation keeps every vector's length.

# %%
rope_model = GPT(ModelConfig.preset("tiny", positional="rope"), seed=0)
_, rope_cache = rope_model.run_with_cache(ids)
q_plain, q_rot = rope_cache["q", 0], rope_cache["rot_q", 0]  # (B, H, T, D)
cos, sin = positional.rope_angles(np.arange(T), rope_model.config.d_head)
assert np.allclose(q_rot, positional.rope_apply(q_plain, cos, sin, rope_model.config.rope_style), atol=1e-6)
print("hook_rot_q == rope_apply(hook_q):", q_plain.shape, "->", q_rot.shape)
print("length kept:", np.allclose(np.linalg.norm(q_plain, axis=-1), np.linalg.norm(q_rot, axis=-1), atol=1e-5))
print("no hook_pos_embed with RoPE:", "hook_pos_embed" not in rope_cache)
figures.positional_heatmap(rope_model.config, 64)

# %% [markdown]
# ## 7. Five ways to index, trained side by side
#
# Which encoding is best is an empirical question, so measure it:
# `minitransformer.kit.compare` trains one small model per configuration on
# the same tokens, from the same seed, in the same order, and returns their
# validation curves and speed. ALiBi is not built in; it joins the comparison by
# being registered under a name (`minitransformer.core.registry`): no position vectors,
# only a per-head penalty on the attention scores that grows with distance
# (`score_bias`), which attention adds for any positional variant that has one.

# %%
from minitransformer.core import registry
from minitransformer.kit import compare
from minitransformer.core.config import ModelConfig


def alibi_score_bias(q_positions, k_positions, config):
    H = config.n_heads
    slopes = 2.0 ** (-8.0 * np.arange(1, H + 1) / H)  # (H,): one slope per head
    distance = np.asarray(q_positions)[:, None] - np.asarray(k_positions)[None, :]  # (T, S)
    return -slopes[:, None, None] * np.maximum(distance, 0)  # (H, T, S)


if "alibi" not in registry.names("positional"):
    registry.register_positional(
        "alibi", init=lambda config, rng: {}, forward=lambda params, x, positions, config, need_cache=None: (x, {}),
        backward=lambda params, cache, dy: (dy, {}), score_bias=alibi_score_bias)

small = ModelConfig.preset("toy", vocab_size=512, context_length=64, d_model=64, n_layers=2, n_heads=4)
result = compare({name: small.replace(positional=name) for name in ("learned", "sinusoidal", "rope", "alibi", "none")},
                 steps=150, batch_size=8, seed=0)
print(result.table())
result.figure(title="positional encodings compared (150 steps, same data and seed)")

# %% [markdown]
# With one seed and 150 steps only large differences mean something, and the
# large one here is a surprise worth reading slowly. The relative schemes (RoPE,
# ALiBi) learn fastest, but so does the model with no positions at all: causal
# attention already leaks position (a token can count how many tokens precede
# it), and this early in training nothing more is used. The absolute schemes
# trail, sinusoidal most: its codes have size 1 while the embeddings start at
# 0.02, so at first the position signal drowns the token signal. Vaswani et al.
# multiply the embeddings by $\sqrt{d_{model}}$ to balance the two;
# minitransformer leaves that out, and this run shows why it matters. Whether
# the order survives longer training is the first experiment to try
# (`steps=1000`, a minute or two).

# %% [markdown]
# ## 8. Pitfalls
#
# - **Learned positions do not extrapolate.** $W_{pos}$ has `context_length`
#   rows; position 128 has no row, and the model refuses it rather than guess.
#   Sinusoidal codes and RoPE can compute any position, but a model trained on
#   128 positions has never seen the angles of position 500.
# - **The causal mask leaks order.** A decoder without positions is not fully
#   blind (section 4): a position knows how many tokens precede it. Do not read
#   "no positions" as "bag of words" beyond the first layer.
# - **Two RoPE layouts.** `"half"` pairs dimension $i$ with $i + D/2$ (GPT-NeoX,
#   Hugging Face); `"interleaved"` pairs $2i$ with $2i+1$ (the paper, Meta's LLaMA
#   code). Loading weights trained with one into the other silently gives a
#   different model.
# - **RoPE in float32 at large positions.** The angle $p\theta$ at $p \sim 10^4$
#   loses precision in float32; the library computes angles in float64.
# - **Adding positions changes the token.** With learned or sinusoidal codes, the
#   same token at two positions enters attention as two different vectors; its
#   nearest neighbours in $W_E$ (notebook 02) are not those of the stream.

# %%
try:
    model.forward(np.zeros((1, model.config.context_length + 1), dtype=int))
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ## 9. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`,
# and its check prints *not done yet*, so the notebook still runs top to
# bottom. Replace the stub, re-run the check, and aim for *passed*; a wrong
# answer fails loudly with an `AssertionError`. Solutions live in
# `solutions/03_positional_indexing_solutions.ipynb`.
#
# - **core 1**: ALiBi's biases.
# - **core 2**: the sinusoidal table from its formula.
# - **optional 3**: ALiBi inside a real model, through a hook on the pattern.
# - **stretch 4**: the sinusoidal code's shift is a linear map.

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
# **Core 1. ALiBi** (Press, Smith & Lewis, 2022) uses no position vectors at
# all: it adds a penalty to every attention score, proportional to how far back
# the key is, $\text{score}_{h,i,j} \mathrel{+}= -m_h\,(i - j)$, with one slope
# per head, the geometric sequence $m_h = 2^{-8h/H}$ for $h = 1 \dots H$
# ($\tfrac12, \tfrac14, \dots, \tfrac1{256}$ for 8 heads). Steep heads look only
# at the last few tokens; shallow heads look far back.
#
# Write `alibi_slopes(n_heads)` (shape `(H,)`) and `alibi_bias(T, n_heads)`,
# shape `(H, T, T)`: `bias[h, i, j] = -slopes[h] * (i - j)` for $j \le i$, and
# `-np.inf` for $j > i$ (the causal mask folded in).

# %%
def alibi_slopes(n_heads):
    raise NotImplementedError  # your code here


def alibi_bias(T, n_heads):
    raise NotImplementedError  # your code here


def test_alibi_bias():
    assert np.allclose(alibi_slopes(8), [2.0 ** -k for k in range(1, 9)]), "8 heads: 1/2, 1/4, ..., 1/256"
    assert np.allclose(alibi_slopes(4), [0.25, 0.0625, 0.015625, 0.00390625]), "4 heads: 2^-2, 2^-4, ..."
    b = alibi_bias(5, 4)
    assert b.shape == (4, 5, 5), f"shape {b.shape}, expected (H, T, T) = (4, 5, 5)"
    assert np.all(np.diagonal(b, axis1=1, axis2=2) == 0), "no penalty for attending to yourself"
    assert np.isneginf(b[:, 1, 3]).all() and np.isneginf(b[:, 0, 4]).all(), "the future is masked with -inf"
    assert np.isclose(b[0, 4, 1], -0.25 * 3) and np.isclose(b[3, 2, 0], -0.00390625 * 2)
    lower = np.tril_indices(4, -1)
    assert np.allclose(b[:, 1:, 1:][:, lower[0], lower[1]], b[:, :-1, :-1][:, lower[0], lower[1]]), \
        "the bias depends only on the distance i - j"


check("core 1 (ALiBi biases)", test_alibi_bias)

# %% [markdown]
# **Core 2.** Write `my_sinusoidal(n_positions, d_model)` from the formula in
# section 2 (`PE[p, 2k] = sin(p θ_k)`, `PE[p, 2k+1] = cos(p θ_k)`,
# `θ_k = 10000^(-2k/d_model)`), shape `(P, C)`.

# %%
def my_sinusoidal(n_positions, d_model):
    raise NotImplementedError  # your code here


def test_my_sinusoidal():
    got = my_sinusoidal(50, 16)
    assert got.shape == (50, 16), f"shape {got.shape}, expected (P, C) = (50, 16)"
    assert np.allclose(got[0], [0, 1] * 8), "position 0: every sin is 0 and every cos is 1"
    assert np.allclose(got, positional.sinusoidal_table(50, 16), atol=1e-5)


check("core 2 (my_sinusoidal)", test_my_sinusoidal)

# %% [markdown]
# **Optional 3. ALiBi in the course model.** The model applies no bias, but
# `run_with_hooks` can replace `blocks.{i}.attn.hook_pattern`. A pattern row is
# a softmax of scores, so $\log(\text{pattern})$ is the scores minus a constant
# per row, and $\operatorname{softmax}(\log \text{pattern} + \text{bias})$ is
# exactly $\operatorname{softmax}(\text{scores} + \text{bias})$. Write
# `alibi_hook(pattern)`: pattern `(B, H, T, T)` → the pattern with ALiBi biases
# (your `alibi_bias`) applied. Masked entries are 0 in the pattern and must stay
# 0. (Hint: `np.log(0)` is `-inf` with a warning; `np.errstate(divide="ignore")`
# silences it.) The check then shows the position-free model telling the
# shuffled sentence apart in its logits at the last position.

# %%
def alibi_hook(pattern):
    raise NotImplementedError  # your code here


def test_alibi_hook():
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(1, 4, 6, 6))
    mask = np.triu(np.ones((6, 6), dtype=bool), 1)
    scores[..., mask] = -np.inf
    got = alibi_hook(nn.softmax(scores))
    assert got.shape == (1, 4, 6, 6)
    assert np.allclose(got, nn.softmax(scores + alibi_bias(6, 4)), atol=1e-6), "softmax(scores + bias)"
    assert np.all(got[..., mask] == 0), "masked entries stay 0"
    hooks = {f"blocks.{i}.attn.hook_pattern": alibi_hook for i in range(nopos.config.n_layers)}
    a = nopos.run_with_hooks(ids, hooks)[0, -1]
    b = nopos.run_with_hooks(shuffled, hooks)[0, -1]
    assert np.abs(a - b).max() > 1e-2, "with ALiBi, the order of the earlier tokens matters"


check("optional 3 (ALiBi hook)", test_alibi_hook)

# %% [markdown]
# **Stretch 4.** Vaswani et al. chose sinusoids because "for any fixed offset
# $k$, $PE_{p+k}$ can be represented as a linear function of $PE_p$". Write
# `shift_matrix(k, d_model)`: the `(C, C)` matrix $M_k$ with
# $PE[p + k] = PE[p]\, M_k$ for every position $p$. (Each (sin, cos) pair is a
# rotation; the angle-addition formulas give its 2 × 2 block.)

# %%
def shift_matrix(k, d_model):
    raise NotImplementedError  # your code here


def test_shift_matrix():
    PE64 = positional.sinusoidal_table(60, 16).astype(np.float64)
    for k in (1, 3, 10):
        M = shift_matrix(k, 16)
        assert M.shape == (16, 16), f"shape {M.shape}, expected (C, C)"
        assert np.allclose(PE64[:-k] @ M, PE64[k:], atol=1e-5), f"PE[p + {k}] == PE[p] @ M_{k}"
    assert np.allclose(shift_matrix(2, 16) @ shift_matrix(3, 16), shift_matrix(5, 16), atol=1e-6), "shifts compose"


check("stretch 4 (shift matrix)", test_shift_matrix)

# %% [markdown]
# ## 10. Further reading
#
# - Ashish Vaswani et al. (2017). *Attention Is All You Need*, section 3.5: the
#   sinusoidal code and why it was chosen (arXiv:1706.03762).
# - Jianlin Su et al. (2021). *RoFormer: Enhanced Transformer with Rotary
#   Position Embedding*, section 3.4 (arXiv:2104.09864).
# - Ofir Press, Noah A. Smith, Mike Lewis (2022). *Train Short, Test Long:
#   Attention with Linear Biases Enables Input Length Extrapolation* (ALiBi). ICLR.
# - Adi Haviv, Ori Ram, Ofir Press, Peter Izsak, Omer Levy (2022). *Transformer
#   Language Models without Positional Encodings Still Learn Positional
#   Information.* Findings of EMNLP. The causal mask as a source of order.
# - Aston Zhang et al. *Dive into Deep Learning*, section 11.6 (d2l.ai): the
#   binary-digits view of the sinusoidal code.
# - Amirhossein Kazemnejad (2019). *Transformer Architecture: The Positional
#   Encoding* (blog post): the shift matrix of stretch 4, derived step by step.
#
# In the package: `minitransformer/positional.py` (`sinusoidal_table`,
# `binary_positions`, `rope_angles`, `rope_apply`, the learned `W_pos`),
# `attention/mha.py` (where RoPE is applied to q and k), `figures/stages.py`
# (`positional_heatmap`, `similarity_vs_distance`, `rope_rotations`).
