# Source of notebooks/solutions/04_attention_retrieval_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 04_attention`.

# %% [markdown]
# # Solutions · Stage 4 · attention · *retrieval*
#
# Worked solutions to the exercises of `04_attention_retrieval.ipynb`. Try them
# there first: a solution read before the attempt teaches much less than one
# read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import math

import numpy as np

from minitransformer.core import registry
from minitransformer.attention import mha
from minitransformer.attention.kv_cache import KVCache
from minitransformer.cli import load_course_model
from minitransformer.core.config import ModelConfig
from minitransformer.training.data import load_corpus, split_text
from minitransformer.model import GPT

# The notebook's setup, the part the checks use.
model, tok, meta = load_course_model()
c = model.config
K = np.array([[1.0, 0.0], [0.0, 1.0]])
V = np.array([[10.0, 0.0], [0.0, 10.0]])
text = "The return statement leaves the current function call with the expression list"
logits, cache = model.run_with_cache(np.array([tok.encode_ordinary(text)]))
_, val_text = split_text(load_corpus("pydoc"))
val_ids = np.array(tok.encode_ordinary(val_text))
prompt = np.array([val_ids[:100]])


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: causal attention for one head
#
# Three lines of the equation: scores scaled by $1/\sqrt{D}$, $-\infty$ above
# the diagonal (`np.triu(..., k=1)` marks the future), a softmax along the keys.
# Subtracting the row maximum before `exp` changes nothing mathematically and
# keeps it from overflowing; the diagonal is never masked, so every row has at
# least one finite score and the maximum is finite.

# %%
def my_causal_attention(q, k, v):
    T, D = q.shape
    scores = q @ k.T / math.sqrt(D)  # (T, D) @ (D, T) -> (T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # True where key j > query i
    scores = np.where(future, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)  # exp(-inf) = 0: the future gets no weight
    pattern = weights / weights.sum(axis=-1, keepdims=True)
    return pattern, pattern @ v  # (T, T) @ (T, D) -> (T, D)


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
# ## Core 2: the size of a KV cache
#
# Per token and per layer the cache holds one key and one value for each
# key/value head: $2 \times G \times D$ numbers of 4 bytes (float32).
#
# - Course model, 100 tokens: $2 \times 4 \text{ layers} \times 4 \text{ heads} \times 32 \times 4 \text{ bytes} = 4{,}096$
#   bytes per token, so **409,600** bytes.
# - Multi-query, 128 tokens: one key/value head, $2 \times 4 \times 1 \times 32 \times 4 = 1{,}024$
#   bytes per token, so **131,072** bytes (a quarter per token).

# %%
guess_course_bytes = 2 * 4 * 4 * 32 * 4 * 100
guess_mqa_bytes = 2 * 4 * 1 * 32 * 4 * 128


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
# ## Optional 3: multi-query attention from scratch
#
# The queries are split into $H$ heads as usual; the key and value projections
# give one head each, (B, T, D). Adding an axis of length one, `k[:, None]`,
# lets numpy broadcast that single head against all $H$ query heads, so it is
# never copied. The rest is core 1 for every head at once, then the heads side
# by side and the output projection $W_O$.

# %%
def my_mqa(params, x, n_heads):
    B, T, C = x.shape
    q = x @ params["W_Q"] + params["b_Q"]  # (B, T, C) -> (B, T, H*D)
    D = q.shape[-1] // n_heads
    q = q.reshape(B, T, n_heads, D).transpose(0, 2, 1, 3)  # -> (B, H, T, D)
    k = (x @ params["W_K"] + params["b_K"])[:, None]  # (B, 1, T, D): one key head for all
    v = (x @ params["W_V"] + params["b_V"])[:, None]  # (B, 1, T, D)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)  # (B, H, T, D) @ (B, 1, D, T) -> (B, H, T, T)
    scores = np.where(np.triu(np.ones((T, T), dtype=bool), k=1), -np.inf, scores)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    pattern = weights / weights.sum(axis=-1, keepdims=True)
    z = pattern @ v  # (B, H, T, T) @ (B, 1, T, D) -> (B, H, T, D)
    z = z.transpose(0, 2, 1, 3).reshape(B, T, n_heads * D)  # the heads side by side
    return z @ params["W_O"] + params["b_O"]  # (B, T, H*D) -> (B, T, C)


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
# ## Stretch 4: sliding-window attention
#
# Only the mask changes: besides the future, a query $i$ may not read keys
# $j \le i - \text{window}$. With `window = 1` only the diagonal survives, so each
# position retrieves exactly its own value; with `window >= T` nothing extra is
# masked and it is causal attention again.

# %%
def my_window_attention(q, k, v, window):
    T, D = q.shape
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    hidden = (j > i) | (j <= i - window)  # the future, and what fell out of the window
    scores = np.where(hidden, -np.inf, q @ k.T / math.sqrt(D))
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True) @ v


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
