# Source of notebooks/10_optimization_three_views.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 10_optimization`.

# %% [markdown]
# # Optimising an LLM takes three views
#
# Making a language model faster or better is not one skill but three, and the
# interesting problems need all of them at once:
#
# 1. **Deterministic software optimisation**: the same answer with less work.
#    Better algorithms and data structures; checked by getting *identical*
#    results.
# 2. **Hardware parallelism**: the same work done in fewer seconds, by shaping
#    it so the machine can do many multiply-adds at once. Measured in FLOPs per
#    second against what the machine can do at best.
# 3. **Probabilistic thinking**: the model's output is a distribution, not an
#    answer. Quality is measured in expectations (loss, perplexity), outputs
#    differ from run to run by design, and settings such as temperature trade
#    one kind of quality for another.
#
# Each view is shown below with this project's own code and measurements: small,
# quick timings (`time.perf_counter`, the median of a few repeats) on whatever
# machine runs the notebook. Absolute numbers depend on that machine and on what
# else it is doing; the ratios are the point.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import math
import os
import time

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from minitransformer.core import nn
from minitransformer import figures
from minitransformer.attention.kv_cache import KVCache
from minitransformer.cli import load_course_model
from minitransformer.training.data import load_corpus, split_text
from minitransformer.feedforward import probabilities, sample
from minitransformer.costs import estimate_flops_per_token
from minitransformer.tokenizer import train_fast, train_reference
from minitransformer.training import evaluate_tokens, unigram_loss

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small on the web


def median_time(fn, repeats=3):
    """The median wall-clock time of ``repeats`` calls of ``fn()``, in seconds, and the last result."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), result


model, tok, meta = load_course_model()  # data/course: trained by `minitransformer train`, see data/README.md
c = model.config
vocab_labels = [tok.decode([i]) for i in range(c.vocab_size)]
train_text, val_text = split_text(load_corpus("pydoc"))
val_ids = np.array(tok.encode_ordinary(val_text))
print(model)

# %% [markdown]
# ## View 1 · Deterministic software optimisation: the same answer with less work
#
# ### The BPE trainer: recount everything, or update what changed
#
# The reference trainer (`tokenizer/train_reference.py`) recounts every pair of
# the text at every merge: $O(\text{text} \times \text{merges})$. The fast one
# (`train_fast.py`) counts each distinct chunk once, weighted by how often it
# occurs, updates only the counts a merge touches, and finds the best pair in a
# priority queue. The check of this kind of optimisation is strict: the merges
# must be *identical*, not close.

# %%
print(f"{'slice':>8}{'reference':>12}{'fast':>10}{'speed-up':>10}   same merges")
for n in [5_000, 10_000, 20_000]:
    text = train_text[:n]
    t_ref, ref = median_time(lambda: train_reference(text, 512), repeats=3 if n <= 10_000 else 1)
    t_fast, fast = median_time(lambda: train_fast(text, 512), repeats=5)
    assert fast.merges == ref.merges
    print(f"{n:>7,}B{t_ref:>11.2f}s{t_fast * 1e3:>8.1f}ms{t_ref / t_fast:>9.0f}×   yes")

# %% [markdown]
# The gap grows with the text: the reference does work proportional to the text
# at every merge, the fast trainer mostly work proportional to what each merge
# changes. On the whole corpus (466 KB) the README records 72 s against 0.19 s.
#
# ### Generation: recompute the past, or keep it (the KV cache)
#
# To generate token $t$, the model needs the keys and values of positions
# $1..t-1$ in every layer. Recomputing them means running the whole sequence
# again at every step ($O(t)$ positions of work per token, $O(t^2)$ attention);
# the KV cache keeps them, and each step runs one position. We time each step
# of a greedy decode both ways, using the model's own `forward` with and without
# a `KVCache`:

# %%
prompt = np.array([tok.encode_ordinary("The return statement")])
n_new = c.context_length - prompt.shape[1]


def decode_steps(use_cache):
    """Greedy decoding to the full context; returns the ids and the time of each step."""
    ids, times = prompt, []
    kv = KVCache.for_config(c) if use_cache else None
    with nn.no_grad():
        logits = model.forward(ids, kv_cache=kv)
        for _ in range(n_new):
            next_id = logits[:, -1].argmax(axis=-1)[:, None]  # (1, 1)
            ids = np.concatenate([ids, next_id], axis=1)
            if use_cache:  # the cached step appends to the cache, so it runs once
                t, logits = median_time(lambda: model.forward(next_id, kv_cache=kv), repeats=1)
            else:
                t, logits = median_time(lambda: model.forward(ids), repeats=3)
            times.append(t)
    return ids, np.array(times)


ids_cache, t_cache = decode_steps(use_cache=True)
ids_full, t_full = decode_steps(use_cache=False)
assert np.array_equal(ids_cache, ids_full), "the cache must not change a single token"
print(f"{n_new} tokens, identical with and without the cache")
print(f"total: {t_full.sum() * 1e3:.0f} ms recomputing, {t_cache.sum() * 1e3:.0f} ms with the cache "
      f"({t_full.sum() / t_cache.sum():.1f}× faster)")

fig = Figure(figsize=(6, 3))
ax = fig.add_subplot()
positions = prompt.shape[1] + np.arange(n_new)
ax.plot(positions, t_full * 1e3, lw=1, label="recompute the sequence")
ax.plot(positions, t_cache * 1e3, lw=1, label="KV cache: one position")
ax.set_xlabel("length of the sequence so far (tokens)")
ax.set_ylabel("ms per new token")
ax.set_title("cost of each generation step")
ax.legend()
fig.tight_layout()
fig

# %% [markdown]
# The cache's line stays nearly flat while the other climbs. The cache costs
# memory instead (notebook 04 measures it, and shows how grouped-query and
# multi-query attention shrink it): a classic trade of space for time.
#
# ## View 2 · Hardware parallelism: the same work in fewer seconds
#
# ### What the machine can do: the matmul peak
#
# A matrix product of two $n \times n$ matrices is $2n^3$ floating-point
# operations (one multiply and one add per term). numpy hands it to a BLAS
# library that uses vector instructions and every core. Small products are
# dominated by overhead; large ones approach the machine's peak.

# %%
print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} (other programs competing for the cores "
      "slow small products down most)\n")
rng = np.random.default_rng(0)
sizes = [32, 64, 128, 256, 512, 1024]
gflops = []
for n in sizes:
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    t, _ = median_time(lambda: a @ b, repeats=7 if n < 1024 else 5)
    gflops.append(2 * n**3 / t / 1e9)
    print(f"n = {n:>4}: {t * 1e3:8.3f} ms, {gflops[-1]:6.1f} GFLOP/s")
peak = max(gflops)
print(f"\nbest: {peak:.0f} GFLOP/s (float32); we call this the machine's matmul peak")
fig = Figure(figsize=(6, 2.6))
ax = fig.add_subplot()
ax.plot(sizes, gflops, "o-")
ax.set_xscale("log", base=2)
ax.set_xticks(sizes, [str(n) for n in sizes])
ax.set_xlabel("n (an n x n by n x n float32 product)")
ax.set_ylabel("GFLOP/s")
ax.set_title("matmul speed against size")
fig.tight_layout()
fig

# %% [markdown]
# ### Attention three ways
#
# The same causal attention for one sequence with the course model's shape
# ($H = 4$ heads, $T = 128$ positions, $D = 32$), written three ways:
#
# - **Python loops** over heads, queries and keys, one multiply-add at a time;
# - **loops over heads and queries**, each row a numpy vector operation;
# - **vectorised**: a few batched matrix products for all heads at once.
#
# The arithmetic is the same: $QK^\top$ and $\text{pattern}\,V$ are each
# $2HT^2D$ FLOPs if the whole $T \times T$ square is computed, which is what the
# vectorised version does (the causal half is masked afterwards).

# %%
H, T, D = c.n_heads, c.context_length, c.d_head
q, k, v = rng.standard_normal((3, H, T, D)).astype(np.float32)
scale = 1.0 / math.sqrt(D)
flops = 4 * H * T * T * D


def attention_python(q, k, v):
    ql, kl, vl = q.tolist(), k.tolist(), v.tolist()  # plain Python floats
    out = [[[0.0] * D for _ in range(T)] for _ in range(H)]
    for h in range(H):
        for i in range(T):
            scores = []
            for j in range(i + 1):  # causal: keys 0..i
                s = 0.0
                for d in range(D):
                    s += ql[h][i][d] * kl[h][j][d]
                scores.append(s * scale)
            m = max(scores)
            w = [math.exp(s - m) for s in scores]
            total = sum(w)
            for j in range(i + 1):
                for d in range(D):
                    out[h][i][d] += w[j] / total * vl[h][j][d]
    return np.array(out, dtype=np.float32)


def attention_rows(q, k, v):
    out = np.empty_like(q)
    for h in range(H):
        for i in range(T):
            s = k[h, : i + 1] @ q[h, i] * scale  # (i+1,)
            w = np.exp(s - s.max())
            out[h, i] = (w / w.sum()) @ v[h, : i + 1]  # (D,)
    return out


def attention_vectorised(q, k, v):
    scores = (q * np.float32(scale)) @ k.transpose(0, 2, 1)  # (H, T, D) @ (H, D, T) -> (H, T, T)
    scores += np.triu(np.full((T, T), -np.inf, np.float32), k=1)  # the causal mask
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores @ v  # (H, T, T) @ (H, T, D) -> (H, T, D)


results = {}
for name, fn, repeats in [("Python loops", attention_python, 1), ("row by row (numpy)", attention_rows, 3),
                          ("vectorised (numpy)", attention_vectorised, 7)]:
    t, out = median_time(lambda: fn(q, k, v), repeats)
    results[name] = (t, out)
reference = results["vectorised (numpy)"][1]
print(f"{'implementation':<22}{'time':>12}{'GFLOP/s':>10}{'% of peak':>11}")
for name, (t, out) in results.items():
    assert np.allclose(out, reference, atol=1e-4), name
    print(f"{name:<22}{t * 1e3:>10.2f}ms{flops / t / 1e9:>10.2f}{flops / t / 1e9 / peak:>10.1%}")

# %% [markdown]
# Same result, orders of magnitude apart. The Python loop pays the interpreter
# for every multiply-add; the row version pays it once per row; the vectorised
# version hands whole matrices to BLAS. Even so it stays below the peak: the
# $128 \times 128$ products are small, numpy's batched matmul of many small
# matrices does not use a second core, and the mask and softmax touch every
# score several times for a few FLOPs each, so that part is limited by memory
# traffic rather than arithmetic (which is what FlashAttention reorganises).
# For comparison, a batch of 16 sequences and the whole model's forward, whose
# large 2-D projections are the kind of product BLAS does best:

# %%
def bar_chart(rows, title):
    fig = Figure(figsize=(6, 0.5 + 0.45 * len(rows)))
    ax = fig.add_subplot()
    names, values = zip(*rows)
    ax.barh(range(len(rows))[::-1], values, color=["C0"] * (len(rows) - 1) + ["C3"])
    ax.set_yticks(range(len(rows))[::-1], names, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("GFLOP/s (log scale)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


qb, kb, vb = rng.standard_normal((3, 16 * H, T, D)).astype(np.float32)  # 16 sequences' heads, stacked
t_batch, _ = median_time(lambda: attention_vectorised(qb, kb, vb), repeats=5)
ids16 = val_ids[: 16 * T].reshape(16, T)
t_fwd, _ = median_time(lambda: model.forward(ids16), repeats=3)
model_flops = estimate_flops_per_token(c) * ids16.size  # forward FLOPs of 16 x 128 tokens
rows = [(name, flops / t / 1e9) for name, (t, _) in results.items()]
rows += [("vectorised, 16 sequences", 16 * flops / t_batch / 1e9),
         ("the whole model forward, 16 x 128 tokens", model_flops / t_fwd / 1e9),
         ("matmul peak (best square size)", peak)]
for name, g in rows[3:]:
    print(f"{name:<42}{g:8.1f} GFLOP/s ({g / peak:.0%} of peak)")
bar_chart(rows, "the same kind of arithmetic, organised differently")

# %% [markdown]
# ### Where a forward pass spends its time, stage by stage
#
# The performance lens (`minitransformer.trace.perf`) asks each stage's variant
# for its FLOPs and reads the wall time off one forward pass of the model itself:
# a hook notes the clock at every hook point, and the time between two points
# belongs to the stage between them. A stage whose GFLOP/s is far below the peak
# spends its time on what is not a matmul (norms, softmax, GELU, copying).

# %%
from minitransformer.trace import perf

stage_rows = perf.stage_costs(model, ids16, repeats=3)
print(perf.format_costs(stage_rows))

# %% [markdown]
# ### Every core at work: one shard of the batch per core
#
# BLAS spreads each matrix product over every core, but numpy's element-wise
# work (softmax, GELU, the norms, the residual adds) runs on one, so in a
# training step part of the machine waits. `GPT.loss` and `GPT.backward`
# therefore cut the batch into one shard of whole sequences per core, run each
# shard's forward and backward in its own thread with BLAS held to one thread
# per shard, and add the shards' gradients (`minitransformer/core/cores.py`):
# data parallelism, the same idea as training on many machines, inside one
# process. The threads truly run together because numpy lets go of Python's
# lock inside its loops; they still hand that lock to each other between numpy
# calls, which is why two cores give less than twice the speed.
# `GPT(config, threads=1)` is the plain one-thread loop; the two compute the
# same gradient up to float rounding (the sums are taken in another order).

# %%
from minitransformer import GPT
from minitransformer.core.tree import flatten

targets16 = val_ids[1: 16 * T + 1].reshape(16, T)
plain, sharded = GPT(c, params=model.params, threads=1), GPT(c, params=model.params)  # the same weights


def train_step(m):
    m.loss(ids16, targets16)
    return flatten(m.backward())


t_plain, g_plain = median_time(lambda: train_step(plain), repeats=3)
t_sharded, g_sharded = median_time(lambda: train_step(sharded), repeats=3)
scale = max(float(np.abs(g).max()) for g in g_plain.values())
worst = max(float(np.abs(g_plain[k] - g_sharded[k]).max()) for k in g_plain) / scale
print(f"loss + backward, 16 x {T} tokens: one thread {t_plain * 1e3:.0f} ms, "
      f"{sharded.threads} shards side by side {t_sharded * 1e3:.0f} ms ({t_plain / t_sharded:.2f}x)")
print(f"largest gradient difference, relative to the largest gradient: {worst:.1e}")

# %% [markdown]
# The lesson of this view: count the FLOPs, measure the seconds, and compare
# with the peak. The gap says what to do next: remove Python from the inner loop,
# then make the matrices bigger (batch, fuse projections such as $W_Q, W_K, W_V$
# into one product), then stop.
#
# ## View 3 · Probabilistic thinking: the output is a distribution
#
# ### What the model actually produces
#
# The model does not produce a next token; it produces a probability for every
# token. Its quality is an average over text (the loss), and the text it writes
# is a draw from those distributions.

# %%
text = "The return statement leaves the current function"
logits = model.forward(np.array([tok.encode_ordinary(text)]))[0, -1].astype(np.float64)
p = probabilities(logits)
top = np.argsort(-p)[:6]
entropy = -np.sum(p * np.log2(p))
print(f"after {text!r}:")
for i in top:
    print(f"  {vocab_labels[i]!r:<14} {p[i]:6.1%}")
print(f"entropy {entropy:.2f} bits: as uncertain as a uniform choice among {2**entropy:.0f} tokens")

# %% [markdown]
# ### Temperature and top-p reshape that distribution
#
# Temperature below 1 sharpens it (more predictable, more repetitive text),
# above 1 flattens it (more varied, more errors); top-p cuts off the long tail of
# unlikely tokens, where most of the nonsense lives.

# %%
figures.sampling_effects(logits, vocab_labels, settings=[{"temperature": 0.5}, {"temperature": 1.0},
                                                     {"temperature": 1.5}, {"top_p": 0.6}])

# %% [markdown]
# ### Perplexity = exp(loss)
#
# The loss is the average surprise in nats per token over held-out text; its
# exponential, the **perplexity**, is the number of equally likely tokens the
# model is, on average, choosing among. The unigram model (token frequencies,
# no context) and the uniform distribution give the scale.

# %%
t_eval, loss = median_time(lambda: evaluate_tokens(model, val_ids), repeats=1)
uni = unigram_loss(np.array(tok.encode_ordinary(train_text)), val_ids, c.vocab_size)
print(f"{'model':<24}{'loss (nats/token)':>18}{'perplexity':>12}")
for name, value in [("uniform over the vocab", math.log(c.vocab_size)), ("unigram (frequencies)", uni),
                    ("course model", loss)]:
    print(f"{name:<24}{value:>18.3f}{math.exp(value):>12.1f}")
print(f"({len(val_ids):,} held-out tokens, evaluated in {t_eval:.1f} s)")

# %% [markdown]
# ### Same prompt, different continuations
#
# A sampled continuation depends on the random draws. The same seed gives the
# same text (everything here is reproducible); different seeds give different
# texts, all from the same model; temperature 0 (greedy) ignores the seed.

# %%
for seed in [0, 1, 2, 0]:
    out = model.generate(prompt, 20, temperature=0.8, top_p=0.95, seed=seed)
    print(f"seed {seed}: {tok.decode(out[0].tolist())!r}")
greedy = {tok.decode(model.generate(prompt, 20, temperature=0.0, seed=s)[0].tolist()) for s in range(3)}
print(f"greedy with seeds 0, 1, 2: {len(greedy)} distinct text")

# %% [markdown]
# Over many draws the frequencies follow the probabilities (the law of large
# numbers): 4,000 draws of the next token, all at once, against the model's
# distribution.

# %%
draws = sample(np.tile(logits, (4000, 1)), np.random.default_rng(0))
freq = np.bincount(draws, minlength=c.vocab_size) / len(draws)
for i in top:
    print(f"  {vocab_labels[i]!r:<14} probability {p[i]:6.1%}   drawn {freq[i]:6.1%}")

# %% [markdown]
# ## The views combined: many samples, batched
#
# Some uses need many continuations of one prompt (best-of-$n$, voting,
# estimating how often the model says something): a probabilistic need. Drawn
# one at a time, each decode step is a handful of tiny matrix-vector products,
# far below the peak. Drawn together as a batch, the same steps become matrix
# products (hardware), each sequence still with its KV cache (software).

# %%
n_samples, n_tokens = 8, 40
t_one, _ = median_time(lambda: [model.generate(prompt, n_tokens, temperature=0.8, seed=s)
                                for s in range(n_samples)], repeats=3)
t_batch, outs = median_time(lambda: model.generate(np.repeat(prompt, n_samples, axis=0), n_tokens,
                                                   temperature=0.8, seed=0), repeats=3)
print(f"{n_samples} continuations of {n_tokens} tokens: one at a time {t_one * 1e3:.0f} ms, "
      f"as one batch {t_batch * 1e3:.0f} ms ({t_one / t_batch:.1f}× the throughput)")
print(f"distinct continuations in the batch: {len({tuple(o) for o in outs.tolist()})} of {n_samples}")

# %% [markdown]
# ## Pitfalls
#
# - **Timing one run.** The first call pays for memory allocation and caches;
#   other programs steal the CPU. Take the median of several runs, and compare
#   ratios measured in the same run.
# - **"Faster" that changes the answer.** A deterministic optimisation must give
#   identical results (the merges, the tokens); check it every time, as the
#   cells above do.
# - **Counting FLOPs you did not need.** The vectorised attention computes the
#   masked half too; FLOP/s can look good while the work is wasted.
# - **One sample is not the model.** A single continuation, good or bad, is one
#   draw; judge a model by its loss on held-out text, or by many samples.
# - **Perplexities of different tokenizers do not compare.** They are per
#   token; convert to bits per byte first (notebook 06, exercise 3).

# %% [markdown]
# ## Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`
# (or leaves `None`), and its check prints *not done yet*, so the notebook still
# runs top to bottom. Replace the stub, re-run the check, and aim for *passed*; a
# wrong answer fails loudly with an `AssertionError`. Worked solutions are in
# `notebooks/solutions/10_optimization_three_views_solutions.ipynb`.
#
# - **core 1** (hardware): count the FLOPs of a decode step.
# - **core 2** (probability): perplexity from logits.
# - **optional 3** (hardware): vectorise a loop.
# - **stretch 4** (software): a greedy decoder with a KV cache.

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
# **Core 1.** With a KV cache, one decode step of one attention head at position
# $t$ (so $t$ keys stored, the new one included) multiplies one query (D,) with
# $t$ keys and mixes $t$ values. Write `decode_attention_flops(t, H, D)`: the
# FLOPs of that step for $H$ heads (2 per multiply-add). How does it compare
# with recomputing the full $t \times t$ square of section "attention three ways"?

# %%
def decode_attention_flops(t, H, D):
    raise NotImplementedError  # your code here


def test_decode_flops():
    assert decode_attention_flops(1, 1, 1) == 4, "one score (a multiply-add) and one weighted value (a multiply-add)"
    assert decode_attention_flops(128, 4, 32) == 4 * 128 * 4 * 32
    assert decode_attention_flops(128, 4, 32) * 128 == flops, "the full square is t times as much"


check("core 1 (decode_attention_flops)", test_decode_flops)

# %% [markdown]
# **Core 2.** Write `my_perplexity(logits, targets)` from logits (N, V) and
# target ids (N,): the exponential of the mean negative log-probability of the
# targets. Use a numerically stable log-softmax. The check compares it with
# `exp(evaluate_tokens(...))` on four windows of held-out text.

# %%
def my_perplexity(logits, targets):
    raise NotImplementedError  # your code here


def test_my_perplexity():
    assert np.isclose(my_perplexity(np.zeros((3, 10)), np.array([1, 2, 3])), 10.0), "uniform over 10 tokens"
    assert np.isfinite(my_perplexity(np.array([[1000.0, 0.0]]), np.array([0]))), "subtract the max first"
    w = val_ids[: 4 * T + 1]
    lg = model.forward(w[:-1].reshape(4, T)).reshape(-1, c.vocab_size).astype(np.float64)
    assert np.isclose(my_perplexity(lg, w[1:]), math.exp(evaluate_tokens(model, w)), rtol=1e-4)


check("core 2 (my_perplexity)", test_my_perplexity)

# %% [markdown]
# **Optional 3.** `causal_softmax_loop` below applies the causal softmax to a
# (H, T, T) array of scores, one row at a time. Write `my_causal_softmax`
# without any Python loop. The check wants the same result and at least 3× the
# speed on the course model's shape.

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
    raise NotImplementedError  # your code here


def test_my_causal_softmax():
    s = rng.standard_normal((H, T, T)).astype(np.float32)
    assert np.allclose(my_causal_softmax(s), causal_softmax_loop(s), atol=1e-6)
    t_loop, _ = median_time(lambda: causal_softmax_loop(s), repeats=3)
    t_mine, _ = median_time(lambda: my_causal_softmax(s), repeats=5)
    print(f"loop {t_loop * 1e3:.1f} ms, yours {t_mine * 1e3:.2f} ms ({t_loop / t_mine:.0f}×)")
    assert t_loop / t_mine >= 3, "still too slow: is there a loop left?"


check("optional 3 (my_causal_softmax)", test_my_causal_softmax)

# %% [markdown]
# **Stretch 4.** Write `my_greedy_generate(model, prompt_ids, n)` with a KV
# cache: run the prompt (1, T) once into a `KVCache.for_config(model.config)`
# through `model.forward(ids, kv_cache=cache)`, then feed one token at a time,
# always taking the most likely next token. Return (1, T + n) ids. The check
# wants exactly the tokens of `model.generate(..., temperature=0)`.

# %%
def my_greedy_generate(model, prompt_ids, n):
    raise NotImplementedError  # your code here


def test_my_greedy_generate():
    mine = my_greedy_generate(model, prompt, 30)
    assert np.array_equal(mine, model.generate(prompt, 30, temperature=0.0)), "different tokens from generate()"


check("stretch 4 (my_greedy_generate)", test_my_greedy_generate)

# %% [markdown]
# ## Further reading
#
# - Samuel Williams, Andrew Waterman, David Patterson (2009). *Roofline: An
#   Insightful Visual Performance Model for Multicore Architectures.* CACM 52(4).
#   FLOPs, bytes, and the peak.
# - Reiner Pope et al. (2022). *Efficiently Scaling Transformer Inference*
#   (arXiv:2211.05102): the KV cache, batching and memory bandwidth at scale.
# - Tri Dao et al. (2022). *FlashAttention: Fast and Memory-Efficient Exact
#   Attention with IO-Awareness.* NeurIPS (arXiv:2205.14135): the same answer,
#   organised for the hardware.
# - Ari Holtzman et al. (2020). *The Curious Case of Neural Text Degeneration.*
#   ICLR (arXiv:1904.09751): why sampling settings matter.
# - Claude Shannon (1951). *Prediction and Entropy of Printed English.* Bell
#   System Technical Journal 30(1): entropy and perplexity of language.
#
# In this project: `benchmarks/bench_tokenizer.py` and `benchmarks/bench_model.py`
# (the measurements in the README, done carefully), `tokenizer/train_fast.py`,
# `attention/kv_cache.py` (the KV cache), `attention/mha.py` (the notes on
# what made it fast), and `feedforward/output.py` (`probabilities`, `sample`).
