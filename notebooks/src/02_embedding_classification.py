# Source of notebooks/02_embedding_classification.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 02_embedding`.

# %% [markdown]
# # Stage 2 · embedding · *classification*
#
# After tokenization a text is a row of integers, and an integer says nothing
# about what it stands for: id 421 is no closer to 422 than to 7. The embedding
# gives every id a learned vector, and training arranges those vectors so that
# tokens that behave alike sit close together. This notebook builds the lookup
# from a matrix product, reads the classification the course model learned off
# its embedding table, follows the same table out through the tied output head,
# and writes the one subtle gradient of the stage: rows that occur more than once.
#
# Everything runs offline in a few seconds. Run the cells top to bottom.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import time
from collections import Counter

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from minitransformer import embedding
from minitransformer.feedforward import mlp, output
from minitransformer.core import nn
from minitransformer import figures
from minitransformer.cli import load_course_model
from minitransformer.concepts import stage
from minitransformer.model import GPT

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small and readable on the web
np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## 1. The concept: classification
#
# A library catalogue puts each book in a class, and books of one class sit on
# the same shelf, so a reader who found one finds its neighbours. An embedding
# does this for tokens, with no classes given in advance: every token gets a
# point in a $C$-dimensional space, and training moves the points of tokens
# that are used alike (`' list'` and `' string'`, `'('` and `'['`) near each
# other. The classes are never named; they are the neighbourhoods. The
# pipeline's concept table:

# %%
s = stage("embedding")
print(f"stage {s.number}: {s.name}  ->  concept: {s.concept}")
print(f"question: {s.question}")
print(f"data: {s.data_in}  ->  {s.data_out}")
print()
print(s.summary)

# %% [markdown]
# ## 2. The mechanism: a lookup that is a matrix product
#
# The table $W_E$ has one row per token, shape $(V, C)$. Token $t$ becomes its
# row, which is the one-hot vector $e_t \in \{0, 1\}^V$ times the table:
#
# $$
# x = W_E[t] = e_t^{\top} W_E, \qquad X = \operatorname{onehot}(t_1 \dots t_T)\, W_E \in \mathbb{R}^{T \times C}.
# $$
#
# The code never builds the $(T, V)$ one-hot matrix (it would be mostly zeros);
# it indexes. But the product form tells us the gradient: for a loss $\ell$ with
# $\partial \ell / \partial X = dX$,
#
# $$
# \frac{\partial \ell}{\partial W_E} = \operatorname{onehot}(t)^{\top} dX,
# \qquad \text{row } v: \; \sum_{i \,:\, t_i = v} dX_i ,
# $$
#
# the sum over **every position where token $v$ occurs**. A token used twice
# gets two contributions: a *scatter-add*.
#
# Closeness is measured by cosine similarity,
# $\cos(a, b) = a \cdot b / (\lVert a \rVert \lVert b \rVert)$, so that a row's
# length (which grows with how often training touched it) does not decide who
# its neighbours are.

# %% [markdown]
# ## 3. By hand: 6 tokens × 3 dimensions
#
# A vocabulary of six words with a hand-written table. The first coordinate is
# "animal-ness", the second "verb-ness", the third "function word": a made-up
# classification, so we can see what nearest neighbours recover.

# %%
vocab = ["cat", "dog", "runs", "sleeps", "the", "a"]
W_E_small = np.array([
    [0.9, 0.1, 0.0],  # cat
    [0.8, 0.2, 0.1],  # dog
    [0.1, 0.9, 0.0],  # runs
    [0.2, 0.8, 0.1],  # sleeps
    [0.0, 0.1, 0.9],  # the
    [0.1, 0.0, 0.8],  # a
])  # (V, C) = (6, 3)
ids_small = np.array([4, 0, 2, 4, 1, 3])  # "the cat runs the dog sleeps"

one_hot = np.eye(6)[ids_small]  # (T, V) = (6, 6): row i is e_{t_i}
X_product = one_hot @ W_E_small  # (6, 6) @ (6, 3) -> (6, 3)
X_lookup = W_E_small[ids_small]  # (6,) -> (6, 3), what embedding.forward does
assert np.array_equal(X_product, X_lookup)
print("one-hot of the ids (T x V):\n", one_hot.astype(int))
print("\none-hot @ W_E == W_E[ids]:\n", X_lookup)

unit = W_E_small / np.linalg.norm(W_E_small, axis=1, keepdims=True)
cosine = unit @ unit.T  # (V, V)
print("\ncosine similarity between the rows:")
print("        " + "".join(f"{w:>8}" for w in vocab))
for w, row in zip(vocab, cosine):
    print(f"{w:>8}" + "".join(f"{c:8.2f}" for c in row))
for t in range(6):
    nn_id, sim = embedding.nearest(W_E_small, t, k=1)[0]
    print(f"nearest to {vocab[t]!r:>8}: {vocab[nn_id]!r} ({sim:.2f})")

# %% [markdown]
# Nearest neighbours recover the three classes that were written into the
# coordinates. A real table has no readable coordinates: its classes are
# visible only through the neighbourhoods.

# %% [markdown]
# ## 4. The course model's table
#
# The course model's $W_E$ has $V = 1024$ rows of width $C = 128$. Here are the
# nearest neighbours of some tokens of Python's documentation.

# %%
model, tok, meta = load_course_model()
W_E = model.params["embed"]["W_E"]  # (V, C)
n_tok = tok.vocab_size  # ids the tokenizer can produce
print(model)
print("W_E:", W_E.shape, W_E.dtype)


def label(i: int) -> str:
    return tok.decode([int(i)])


queries = [" return", " function", " list", " class", " if", " is", " and", "(", ",", "1", " object", " integer"]
for q in queries:
    (t,) = tok.encode(q)  # each of these is one token
    neighbours = embedding.nearest(W_E[:n_tok], t, k=5)
    print(f"{q!r:>12} -> " + "  ".join(f"{label(j)!r} {sim:.2f}" for j, sim in neighbours))

# %% [markdown]
# How good a classification is this? Give every token one of five coarse
# classes by how it is spelled (a word with a leading space, a word piece,
# digits, punctuation, whitespace), hide each token's class, and guess it from
# the classes of its 5 nearest neighbours (a leave-one-out $k$-nearest-neighbour
# classifier). Nobody told the model these classes; if its neighbourhoods agree
# with them far more often than chance, it learned them. An untrained table of
# the same shape is the control.

# %%
def spelling_class(s: str):
    if "\ufffd" in s or not s:
        return None  # part of a multi-byte character: no spelling to judge
    if not s.replace("\n", " ").replace("\t", " ").isprintable():
        return None  # a control character: never in the corpus, so its row is untrained
    if s.isspace():
        return "whitespace"
    if s[0] == " " and s[1:].isalpha():
        return "space+word"
    if s.isalpha():
        return "word piece"
    if s.strip().isdigit():
        return "digits"
    if not any(c.isalnum() or c.isspace() for c in s):
        return "punctuation"
    return None  # mixed: left out


classes = {i: spelling_class(label(i)) for i in range(n_tok) if i not in tok.special_tokens.values()}
kept = np.array([i for i, c in classes.items() if c is not None])
names = sorted(set(classes[i] for i in kept))
y = np.array([names.index(classes[i]) for i in kept])
print({n: int((y == k).sum()) for k, n in enumerate(names)})


def knn_accuracy(table, k=5):
    """Leave-one-out k-NN accuracy of the spelling classes, by cosine similarity of the rows."""
    U = table[kept] / np.linalg.norm(table[kept], axis=1, keepdims=True)  # (N, C)
    sims = U @ U.T  # (N, N)
    np.fill_diagonal(sims, -np.inf)  # a token may not vote for itself
    top = np.argpartition(-sims, k, axis=1)[:, :k]  # (N, k) nearest neighbours
    votes = np.array([np.bincount(y[row], minlength=len(names)).argmax() for row in top])
    return (votes == y).mean()


untrained = GPT(model.config, seed=0).params["embed"]["W_E"]
print(f"\nalways guessing the largest class: {np.bincount(y).max() / len(y):.0%}")
print(f"5-NN on an untrained table:        {knn_accuracy(untrained):.0%}")
print(f"5-NN on the course model's table:  {knn_accuracy(W_E):.0%}")

# %% [markdown]
# ## 5. The cache: what the model looked up
#
# In a forward pass, the embedding stage's output is `hook_embed`, $(B, T, C)$:
# the rows of $W_E$ for the ids, before the positions are added (that sum is
# `blocks.0.hook_resid_pre`).

# %%
sentence = "The return statement leaves the current function call with"
ids = np.array([tok.encode(sentence)])  # (1, T)
logits, cache = model.run_with_cache(ids)
print("ids:", ids.shape, "hook_embed:", cache["embed"].shape)
assert np.array_equal(cache["embed"][0], W_E[ids[0]])
assert np.allclose(cache["blocks.0.hook_resid_pre"], cache["embed"] + cache["pos_embed"])
print("hook_embed == W_E[ids], and resid_pre of block 0 == hook_embed + hook_pos_embed")

# %% [markdown]
# ## 6. Figures: a map of the table
#
# 128 dimensions do not fit on a page. Principal component analysis (PCA)
# projects the rows onto the two directions along which they vary most;
# `figures.embedding_map` draws a sample of the vocabulary in grey and the
# sentence's tokens on top.

# %%
figures.embedding_map(W_E[:n_tok], ids[0].tolist(), [label(i) for i in range(n_tok)])

# %% [markdown]
# The same projection, coloured by the spelling classes of section 4 (computed
# here; `figures.embedding_map` has no class colouring). Two dimensions keep
# only a small share of the variance, printed in the title, so classes overlap
# on the page more than they do in the table, where the $k$-NN test above
# separated them. The small clump far from the rest holds tokens that never
# occur in the corpus (such as `$`, a backtick and the tab): see the pitfalls.

# %%
X = W_E[kept] - W_E[kept].mean(axis=0)  # (N, C), centred
_, S, Vt = np.linalg.svd(X, full_matrices=False)
P = X @ Vt[:2].T  # (N, 2)
share = (S[:2] ** 2).sum() / (S ** 2).sum()
fig = Figure(figsize=(6, 4), layout="constrained")
ax = fig.add_subplot()
for k, n in enumerate(names):
    ax.scatter(P[y == k, 0], P[y == k, 1], s=5, label=n, alpha=0.7)
ax.set_xlabel("PC 1")
ax.set_ylabel("PC 2")
ax.legend(markerscale=3, fontsize=8)
ax.set_title(f"W_E by spelling class (2 components keep {share:.0%} of the variance)")
fig

# %% [markdown]
# ## 7. The tied head: the same table, read backwards
#
# At the end of the pipeline the model scores every token as the next one. The
# course model has a **tied** head (Press & Wolf, 2017): no separate output
# matrix, but $W_E$ again,
#
# $$
# \text{logits}_v = h \cdot W_E[v], \qquad \text{logits} = h\, W_E^{\top} \in \mathbb{R}^V,
# $$
#
# where $h$ is the final residual stream after the last LayerNorm. The vector
# that *reads* a token in is the one that *scores* it on the way out: a
# next-token guess is a search for the rows that best match $h$. (The cache's
# `unembed.hook_in` is exactly $h$: the stream after the final norm, its gain
# and bias included; `ln_final.hook_normalized` is the stream before them, as
# in TransformerLens.)

# %%
h = cache["unembed.hook_in"]  # (1, T, C): the head's input
assert np.allclose(h @ W_E.T, logits, atol=1e-4)
print("logits == unembed.hook_in @ W_E.T")
scores = W_E[:n_tok] @ h[0, -1]  # (V,): one dot product per row
top = np.argsort(-scores)[:5]
print(f"after {sentence!r}, the rows best matching h:", [label(i) for i in top])

# %% [markdown]
# Tying also changes training: $W_E$ gets a gradient from two places, the
# lookup (only the rows of the ids in the batch) and the head (every row,
# because the softmax spreads probability over the whole vocabulary).

# %%
inputs, targets = ids[:, :-1], ids[:, 1:]
loss = model.loss(inputs, targets)
dW_E_total = model.backward()["embed"]["W_E"]  # (V, C): lookup + head
# the head's share, from the head's own backward (causal: the first T-1 positions
# of the cached run are exactly the run on `inputs`)
_, loss_cache = nn.cross_entropy_forward(logits[:, :-1], targets)
dlogits = nn.cross_entropy_backward(loss_cache)  # (1, T-1, V)
_, head_grads = output.head_backward(model.params["unembed"], {"x": h[:, :-1]}, dlogits, W_E=W_E)
dW_lookup = dW_E_total - head_grads["W_E"]
print(f"loss {loss:.3f} nats/token")
print(f"rows with a gradient from the lookup: {int((np.abs(dW_lookup).sum(1) > 1e-6).sum()):4d} of {W_E.shape[0]}"
      f"  (the distinct ids of the input: {len(set(inputs[0].tolist()))})")
print(f"rows with a gradient from the head:   {int((np.abs(head_grads['W_E']).sum(1) > 0).sum()):4d} of {W_E.shape[0]}")

# %% [markdown]
# ## 8. The gradient with repeated ids: a scatter-add
#
# The backward of `W_E[ids]` must add row $i$ of $dX$ into row `ids[i]` of
# $dW_E$, and a token that appears twice must receive **both** rows. The
# obvious numpy line is wrong: with repeated indices, `dW[ids] += dX` reads all
# the old rows, adds, and writes back, so for a repeated id the last write wins.

# %%
ids_rep = np.array([2, 0, 2, 2])  # token 2 three times
dX = np.ones((4, 3))  # (T, C): a gradient of 1 everywhere
wrong = np.zeros((6, 3))
wrong[ids_rep] += dX  # buffered: row 2 gets 1, not 3
right = np.zeros((6, 3))
np.add.at(right, ids_rep, dX)  # unbuffered: every occurrence is added
print("dW[ids] += dX     ->", wrong[:3, 0], "(row 2 should be 3)")
print("np.add.at         ->", right[:3, 0])
print("scatter_rows      ->", embedding.scatter_rows(ids_rep, dX, 6)[:3, 0])
print("one-hot.T @ dX    ->", (np.eye(6)[ids_rep].T @ dX)[:3, 0])

# %% [markdown]
# `np.add.at` is correct. It used to be much slower than the alternatives; with
# current numpy the gap is small. The library's `embedding.scatter_rows` sorts
# the ids, so equal ids form runs, and adds each run with one `np.add.reduceat`.
# On a training-sized batch (16 sequences of 128 tokens, $C = 128$) the two are
# close:

# %%
rng = np.random.default_rng(0)
ids_batch = rng.integers(0, 1024, size=16 * 128)  # (N,), many repeats
rows = rng.normal(size=(16 * 128, 128)).astype(np.float32)  # (N, C)


def best_time(f, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def with_add_at():
    out = np.zeros((1024, 128), np.float32)
    np.add.at(out, ids_batch, rows)
    return out


assert np.allclose(with_add_at(), embedding.scatter_rows(ids_batch, rows, 1024), atol=1e-4)
t_add_at = best_time(with_add_at)
t_scatter = best_time(lambda: embedding.scatter_rows(ids_batch, rows, 1024))
print(f"np.add.at {t_add_at * 1e3:.2f} ms, scatter_rows {t_scatter * 1e3:.2f} ms: the same sums, "
      f"{t_add_at / t_scatter:.1f}x apart")

# %% [markdown]
# ## 9. Pitfalls
#
# - **`dW[ids] += dX` with repeated ids** silently drops gradient (section 8).
#   Use `np.add.at` or sort-and-reduce.
# - **Dot product versus cosine.** Rows differ in length (printed below), and a
#   plain dot product mixes length with direction, so its ranking is not the
#   cosine ranking. Normalise first when you ask "which kind".
# - **A 2-D map is a shadow.** PCA keeps a small share of the variance; two
#   tokens close on the page may be far apart in the table, and the other way round.
# - **Unused tokens have meaningless rows.** The longest rows below are bytes
#   that never occur in the corpus (control characters, halves of multi-byte
#   characters). They are never looked up, so only the tied head moves them: it
#   pushes them away from every stream, to make their probability small. Their
#   "neighbours" say nothing about their kind.
# - **Tying couples input and output.** With a tied head, every training step
#   moves every row (through the softmax), not only the rows of the batch.

# %%
norms = np.linalg.norm(W_E[:n_tok], axis=1)
print(f"row lengths: min {norms.min():.2f}, median {np.median(norms):.2f}, max {norms.max():.2f}")
longest = np.argsort(-norms)[:5]
print("longest rows:", [(label(i), round(float(norms[i]), 2)) for i in longest])
(t,) = tok.encode(" function")
by_dot = np.argsort(-(W_E[:n_tok] @ W_E[t]))[:6]
print("' function' nearest by plain dot product:", [label(i) for i in by_dot if i != t][:5])
print("' function' nearest by cosine:           ", [label(i) for i, _ in embedding.nearest(W_E[:n_tok], t, k=5)])

# %% [markdown]
# ## 10. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`,
# and its check prints *not done yet*, so the notebook still runs top to
# bottom. Replace the stub, re-run the check, and aim for *passed*; a wrong
# answer fails loudly with an `AssertionError`. Solutions live in
# `solutions/02_embedding_classification_solutions.ipynb`.
#
# - **core 1**: the embedding as a matrix product.
# - **core 2**: nearest neighbours by cosine similarity.
# - **optional 3**: the backward of the lookup, with repeated ids.
# - **stretch 4**: the tied head's share of the gradient of $W_E$.

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
# **Core 1.** Write `my_embed(ids, W_E)` for ids of shape `(B, T)` **without
# indexing `W_E`**: build the one-hot array and multiply. It must return
# `(B, T, C)` equal to `W_E[ids]`.

# %%
def my_embed(ids, W_E):
    raise NotImplementedError  # your code here


def test_my_embed():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(7, 3))
    some_ids = rng.integers(0, 7, size=(2, 5))
    out = my_embed(some_ids, table)
    assert out.shape == (2, 5, 3), f"shape {out.shape}, expected (B, T, C) = (2, 5, 3)"
    assert np.allclose(out, table[some_ids])
    assert np.allclose(my_embed(ids, W_E), cache["embed"], atol=1e-6)


check("core 1 (my_embed)", test_my_embed)

# %% [markdown]
# **Core 2.** Write `my_nearest(W_E, token_id, k)`: the `k` ids whose rows have
# the highest cosine similarity with row `token_id`, most similar first, the
# token itself excluded (a list of ints).

# %%
def my_nearest(W_E, token_id, k):
    raise NotImplementedError  # your code here


def test_my_nearest():
    for q in [" return", " list", "(", "1"]:
        (t,) = tok.encode(q)
        expected = [j for j, _ in embedding.nearest(W_E[:n_tok], t, k=5)]
        assert list(my_nearest(W_E[:n_tok], t, 5)) == expected, f"neighbours of {q!r}"


check("core 2 (my_nearest)", test_my_nearest)

# %% [markdown]
# **Optional 3.** Write `my_embedding_backward(ids, dX, V)`: the gradient of
# $W_E$, shape `(V, C)`, for ids `(B, T)` and an upstream gradient `dX`
# `(B, T, C)`. Repeated ids must add up. (Any correct method is fine: a loop,
# `np.add.at`, a one-hot product; then compare their speed.)

# %%
def my_embedding_backward(ids, dX, V):
    raise NotImplementedError  # your code here


def test_my_embedding_backward():
    rng = np.random.default_rng(2)
    some_ids = rng.integers(0, 5, size=(3, 8))  # 24 ids over 5 tokens: many repeats
    dX = rng.normal(size=(3, 8, 4))
    _, emb_cache = embedding.forward({"W_E": np.zeros((5, 4))}, some_ids)
    expected = embedding.backward({"W_E": np.zeros((5, 4))}, emb_cache, dX)[1]["W_E"]
    got = my_embedding_backward(some_ids, dX, 5)
    assert got.shape == (5, 4), f"shape {got.shape}, expected (V, C) = (5, 4)"
    assert np.allclose(got, expected), "each row must be the sum of dX over every position holding that id"


check("optional 3 (my_embedding_backward)", test_my_embedding_backward)

# %% [markdown]
# **Stretch 4.** With a tied head, $\text{logits} = h W_E^{\top}$. Write
# `my_head_grad_W_E(h, dlogits)`: the head's contribution to the gradient of
# $W_E$, shape `(V, C)`, for $h$ `(B, T, C)` and `dlogits` `(B, T, V)`. Derive
# it from the equation first (which index is summed over?).

# %%
def my_head_grad_W_E(h, dlogits):
    raise NotImplementedError  # your code here


def test_my_head_grad_W_E():
    rng = np.random.default_rng(3)
    h_ = rng.normal(size=(2, 5, 4))
    table = rng.normal(size=(9, 4))
    dlogits = rng.normal(size=(2, 5, 9))
    _, expected = output.head_backward({}, {"x": h_}, dlogits, W_E=table)
    got = my_head_grad_W_E(h_, dlogits)
    assert got.shape == (9, 4), f"shape {got.shape}, expected (V, C) = (9, 4)"
    assert np.allclose(got, expected["W_E"])


check("stretch 4 (my_head_grad_W_E)", test_my_head_grad_W_E)

# %% [markdown]
# ## 11. Further reading
#
# - Yoshua Bengio, Réjean Ducharme, Pascal Vincent, Christian Jauvin (2003).
#   *A Neural Probabilistic Language Model.* JMLR 3. Learned word vectors as
#   the first layer of a language model.
# - Tomas Mikolov et al. (2013). *Efficient Estimation of Word Representations
#   in Vector Space* (word2vec, arXiv:1301.3781). Nearest neighbours and
#   analogies in an embedding space.
# - Ofir Press, Lior Wolf (2017). *Using the Output Embedding to Improve
#   Language Models.* EACL. Tying the input and output embeddings.
# - Alec Radford et al. (2019). *Language Models are Unsupervised Multitask
#   Learners* (GPT-2): a tied token embedding plus learned positions.
# - NumPy documentation, `numpy.ufunc.at`: why `a[idx] += b` is buffered and
#   `np.add.at(a, idx, b)` is not.
#
# In the package: `minitransformer/embedding.py` (`forward`, `backward`,
# `scatter_rows`, `nearest`), `feedforward/output.py` (`head_forward` and
# `head_backward`, the tied head), `figures/stages.py` (`embedding_map`).
