# Source of notebooks/solutions/10_optimization_three_views_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 10_optimization`.

# %% [markdown]
# # Solutions · Optimising an LLM takes three views
#
# Worked solutions to the exercises of `10_optimization_three_views.ipynb`. Try
# them there first: a solution read before the attempt teaches much less than
# one read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import math
import time

import numpy as np

from minitransformer.attention.kv_cache import KVCache
from minitransformer.cli import load_course_model
from minitransformer.training.data import load_corpus, split_text
from minitransformer.training import evaluate_tokens

# The notebook's setup, the part the checks use.
model, tok, meta = load_course_model()
c = model.config
_, val_text = split_text(load_corpus("pydoc"))
val_ids = np.array(tok.encode_ordinary(val_text))
prompt = np.array([tok.encode_ordinary("The return statement")])
H, T, D = c.n_heads, c.context_length, c.d_head
flops = 4 * H * T * T * D  # attention over the full T x T square
rng = np.random.default_rng(0)


def median_time(fn, repeats=3):
    """The median wall-clock time of ``repeats`` calls of ``fn()``, in seconds, and the last result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: the FLOPs of a decode step
#
# One query of width $D$ against $t$ keys is $t$ dot products of $D$
# multiply-adds ($2tD$ FLOPs), and mixing $t$ values of width $D$ with the
# weights is another $2tD$: $4tD$ per head, $4tHD$ in all. Recomputing the whole
# $t \times t$ square costs $4t^2HD$, $t$ times as much: at $t = 128$ that is
# 128× the arithmetic to get the one new row that matters.

# %%
def decode_attention_flops(t, H, D):
    return 4 * t * H * D


def test_decode_flops():
    assert decode_attention_flops(1, 1, 1) == 4, "one score (a multiply-add) and one weighted value (a multiply-add)"
    assert decode_attention_flops(128, 4, 32) == 4 * 128 * 4 * 32
    assert decode_attention_flops(128, 4, 32) * 128 == flops, "the full square is t times as much"


check("core 1 (decode_attention_flops)", test_decode_flops)

# %% [markdown]
# ## Core 2: perplexity from logits
#
# A stable log-softmax subtracts each row's maximum before `exp`, so
# `[1000, 0]` gives `[0, -1000]` rather than overflowing. Pick the target's
# log-probability in each row, average the negatives (the loss in nats), and
# exponentiate.

# %%
def my_perplexity(logits, targets):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (N, V)
    loss = -logp[np.arange(len(targets)), targets].mean()
    return math.exp(loss)


def test_my_perplexity():
    assert np.isclose(my_perplexity(np.zeros((3, 10)), np.array([1, 2, 3])), 10.0), "uniform over 10 tokens"
    assert np.isfinite(my_perplexity(np.array([[1000.0, 0.0]]), np.array([0]))), "subtract the max first"
    w = val_ids[: 4 * T + 1]
    lg = model.forward(w[:-1].reshape(4, T)).reshape(-1, c.vocab_size).astype(np.float64)
    assert np.isclose(my_perplexity(lg, w[1:]), math.exp(evaluate_tokens(model, w)), rtol=1e-4)


check("core 2 (my_perplexity)", test_my_perplexity)

# %% [markdown]
# ## Optional 3: the causal softmax without loops
#
# Instead of slicing each row to its first $i + 1$ entries, mask: put $-\infty$
# on the future of every row at once (one (T, T) boolean array, broadcast over
# the heads), and take an ordinary softmax along the last axis. The masked
# entries come out as exactly 0, which is what the loop leaves there.

# %%
def causal_softmax_loop(scores):
    out = np.zeros_like(scores)
    for h in range(scores.shape[0]):
        for i in range(scores.shape[1]):
            s = scores[h, i, : i + 1]
            e = np.exp(s - s.max())
            out[h, i, : i + 1] = e / e.sum()
    return out


def my_causal_softmax(scores):
    T = scores.shape[-1]
    future = np.triu(np.ones((T, T), dtype=bool), k=1)
    s = np.where(future, -np.inf, scores)  # (H, T, T)
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return (e / e.sum(axis=-1, keepdims=True)).astype(scores.dtype)


def test_my_causal_softmax():
    s = rng.standard_normal((H, T, T)).astype(np.float32)
    assert np.allclose(my_causal_softmax(s), causal_softmax_loop(s), atol=1e-6)
    t_loop, _ = median_time(lambda: causal_softmax_loop(s), repeats=3)
    t_mine, _ = median_time(lambda: my_causal_softmax(s), repeats=5)
    print(f"loop {t_loop * 1e3:.1f} ms, yours {t_mine * 1e3:.2f} ms ({t_loop / t_mine:.0f}×)")
    assert t_loop / t_mine >= 3, "still too slow: is there a loop left?"


check("optional 3 (my_causal_softmax)", test_my_causal_softmax)

# %% [markdown]
# ## Stretch 4: greedy generation with a KV cache
#
# The prompt goes through the model once, filling the cache with its keys and
# values; after that each call gets a single new token, (1, 1), and the model
# reads everything earlier from the cache (its positions continue from
# `cache.length`). The last token chosen is never fed back, since nothing
# follows it.

# %%
def my_greedy_generate(model, prompt_ids, n):
    cache = KVCache.for_config(model.config)
    logits = model.forward(prompt_ids, kv_cache=cache)  # the prefill: (1, T, V)
    ids = prompt_ids
    for step in range(n):
        next_id = logits[:, -1].argmax(axis=-1)[:, None]  # (1, 1)
        ids = np.concatenate([ids, next_id], axis=1)
        if step < n - 1:
            logits = model.forward(next_id, kv_cache=cache)  # one position of work
    return ids


def test_my_greedy_generate():
    mine = my_greedy_generate(model, prompt, 30)
    assert np.array_equal(mine, model.generate(prompt, 30, temperature=0.0)), "different tokens from generate()"


check("stretch 4 (my_greedy_generate)", test_my_greedy_generate)
