# Source of notebooks/solutions/02_embedding_classification_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 02_embedding`.

# %% [markdown]
# # Solutions · Stage 2 · embedding · *classification*
#
# Worked solutions to the exercises of `02_embedding_classification.ipynb`. Try
# them there first. Each solution is followed by the notebook's own check,
# copied unchanged (a test keeps the two identical), so every check must say
# *passed*.

# %%
import time

import numpy as np

from minitransformer import embedding
from minitransformer.feedforward import mlp, output
from minitransformer.cli import load_course_model

# The notebook's setup, the part the checks use.
model, tok, meta = load_course_model()
W_E = model.params["embed"]["W_E"]  # (V, C)
n_tok = tok.vocab_size
sentence = "The return statement leaves the current function call with"
ids = np.array([tok.encode(sentence)])  # (1, T)
logits, cache = model.run_with_cache(ids)


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: the lookup as a product
#
# `np.eye(V)[ids]` is the one-hot array, `(B, T, V)`; `@` multiplies its last
# axis with the first of `W_E`. The product does $B \cdot T \cdot V \cdot C$
# multiplications, almost all by zero, which is why the library indexes instead.

# %%
def my_embed(ids, W_E):
    one_hot = np.eye(W_E.shape[0], dtype=W_E.dtype)[ids]  # (B, T) -> (B, T, V)
    return one_hot @ W_E  # (B, T, V) @ (V, C) -> (B, T, C)


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
# ## Core 2: nearest neighbours
#
# Normalise every row to length 1; then one matrix-vector product gives all
# cosines. Exclude the token itself by setting its own similarity to $-\infty$.
# A *stable* sort keeps ties in id order, as the library does.

# %%
def my_nearest(W_E, token_id, k):
    unit = W_E / np.linalg.norm(W_E, axis=1, keepdims=True)  # (V, C)
    sims = unit @ unit[token_id]  # (V,)
    sims[token_id] = -np.inf
    return np.argsort(-sims, kind="stable")[:k].tolist()


def test_my_nearest():
    for q in [" return", " list", "(", "1"]:
        (t,) = tok.encode(q)
        expected = [j for j, _ in embedding.nearest(W_E[:n_tok], t, k=5)]
        assert list(my_nearest(W_E[:n_tok], t, 5)) == expected, f"neighbours of {q!r}"


check("core 2 (my_nearest)", test_my_nearest)

# %% [markdown]
# ## Optional 3: the backward of the lookup
#
# Flatten the batch: `N = B·T` ids and `N` rows of `dX`. Three correct ways,
# then their speed on a training-sized batch. The one-hot product is the
# equation of the notebook's section 2 written literally; `np.add.at` is the
# unbuffered `+=`; the library sorts and reduces runs.

# %%
def backward_loop(ids, dX, V):
    out = np.zeros((V, dX.shape[-1]), dX.dtype)
    for i, row in zip(ids.reshape(-1), dX.reshape(-1, dX.shape[-1])):
        out[i] += row  # one id at a time: repeats add up
    return out


def backward_one_hot(ids, dX, V):
    one_hot = np.eye(V, dtype=dX.dtype)[ids.reshape(-1)]  # (N, V)
    return one_hot.T @ dX.reshape(-1, dX.shape[-1])  # (V, N) @ (N, C) -> (V, C)


def my_embedding_backward(ids, dX, V):
    out = np.zeros((V, dX.shape[-1]), dX.dtype)
    np.add.at(out, ids.reshape(-1), dX.reshape(-1, dX.shape[-1]))  # unbuffered: repeats add up
    return out


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

rng = np.random.default_rng(0)
batch_ids = rng.integers(0, 1024, size=(16, 128))
batch_dX = rng.normal(size=(16, 128, 128)).astype(np.float32)
reference = embedding.scatter_rows(batch_ids.reshape(-1), batch_dX.reshape(-1, 128), 1024)


def library(ids, dX, V):
    return embedding.scatter_rows(ids.reshape(-1), dX.reshape(-1, dX.shape[-1]), V)


for f in (backward_loop, backward_one_hot, my_embedding_backward, library):
    assert np.allclose(f(batch_ids, batch_dX, 1024), reference, atol=1e-3)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        f(batch_ids, batch_dX, 1024)
        times.append(time.perf_counter() - t0)
    print(f"{f.__name__:<22} {min(times) * 1e3:7.2f} ms (best of 3)")

# %% [markdown]
# The one-hot product is by far the slowest: it multiplies a $(V, N)$ matrix
# that is almost all zeros. The other three are close at this size; what
# matters is that all four are *correct*, which `dW[ids] += dX` is not.

# %% [markdown]
# ## Stretch 4: the tied head's gradient
#
# $\text{logits}_{b,t,v} = \sum_c h_{b,t,c}\, W_E[v, c]$, so
# $\partial \ell / \partial W_E[v, c] = \sum_{b,t} dlogits_{b,t,v}\, h_{b,t,c}$:
# the sum runs over **every position** of the batch, and every row $v$ of the
# vocabulary gets a term. In matrix form, with the positions flattened,
# $dW_E = dlogits^\top h$, shape $(V, C)$. (For an untied head $W_U = W_E^\top$
# of shape $(C, V)$, the same sum gives $h^\top dlogits$, its transpose.)

# %%
def my_head_grad_W_E(h, dlogits):
    return np.einsum("btv,btc->vc", dlogits, h)  # sum over batch and time


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
