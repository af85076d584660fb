# Source of notebooks/solutions/05_feedforward_processing_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 05_feedforward`.

# %% [markdown]
# # Solutions · Stage 5 · feed-forward & output · *processing*
#
# Worked solutions to the exercises of `05_feedforward_processing.ipynb`. Try
# them there first: a solution read before the attempt teaches much less than
# one read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import math

import numpy as np

from minitransformer.core import nn
from minitransformer.cli import load_course_model
from minitransformer.feedforward import probabilities
from minitransformer.kit import gradcheck

# The notebook's setup, the part the checks use.
model, tok, meta = load_course_model()
c = model.config
text = "The return statement leaves the current function"
logits, cache = model.run_with_cache(np.array([tok.encode_ordinary(text)]))


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: the GELU MLP
#
# Widen, GELU (the tanh approximation GPT-2 uses, so the numbers match the
# model's to float32 precision), narrow. Nothing mixes positions: every product
# acts on the last axis, so the same code serves (C,), (T, C) and (B, T, C).

# %%
def my_mlp(params, x):
    pre = x @ params["W_in"] + params["b_in"]  # (B, T, C) -> (B, T, F)
    hidden = 0.5 * pre * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (pre + 0.044715 * pre**3)))
    return hidden @ params["W_out"] + params["b_out"], hidden  # (B, T, F) -> (B, T, C)


def test_my_mlp():
    i = 1
    ln2 = model.params["blocks"][i]["ln2"]
    x = cache[f"blocks.{i}.ln2.hook_normalized"] * ln2["w"] + ln2["b"]  # the MLP's input: normalised, gain and bias applied
    y, hidden = my_mlp(model.params["blocks"][i]["mlp"], x)
    assert np.allclose(hidden, cache["post", i], atol=1e-4), "the hidden activation (hook_post) differs"
    assert np.allclose(y, cache[f"blocks.{i}.hook_mlp_out"], atol=1e-4), "the output (hook_mlp_out) differs"


check("core 1 (my_mlp)", test_my_mlp)

# %% [markdown]
# ## Core 2: top-p (nucleus) sampling
#
# Sort the probabilities from most to least likely, and compute for each token
# the mass of the tokens *before* it (`cumsum - p`). A token stays while that
# mass is still below `top_p`: the first token always stays (nothing before it),
# and so does the one that crosses `top_p`. The boolean mask is scattered back
# to vocabulary order, the rest zeroed, and the survivors renormalised.
# `kind="stable"` breaks ties between equal probabilities by id, as the library
# does.
#
# Sampling is then one draw from that distribution; `rng.choice` with `p=` does
# the inverse-CDF draw.

# %%
def my_top_p(probs, top_p):
    order = np.argsort(-probs, kind="stable")  # most likely first
    p_sorted = probs[order]
    keep_sorted = (np.cumsum(p_sorted) - p_sorted) < top_p  # mass before each token
    keep = np.empty_like(keep_sorted)
    keep[order] = keep_sorted  # back to vocabulary order
    out = np.where(keep, probs, 0.0)
    return out / out.sum()


def my_sample_top_p(logits, top_p, rng):
    p = my_top_p(nn.softmax(logits), top_p)
    return int(rng.choice(len(p), p=p))


def test_my_top_p():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lg = rng.normal(0, 2, size=20)
        p = float(rng.uniform(0.05, 1.0))
        assert np.allclose(my_top_p(nn.softmax(lg), p), probabilities(lg, top_p=p), atol=1e-9), f"top_p={p}"
    assert np.allclose(my_top_p(np.array([0.5, 0.3, 0.2]), 0.5), [1, 0, 0]), "0.5 is reached by the first token"
    lg = logits[0, -1].astype(np.float64)
    draws = np.bincount([my_sample_top_p(lg, 0.8, rng) for _ in range(4000)], minlength=c.vocab_size) / 4000
    expected = probabilities(lg, top_p=0.8)
    assert draws[expected == 0].sum() == 0, "a token outside the nucleus was drawn"
    assert np.abs(draws - expected).max() < 0.04, "the sampled frequencies do not follow the distribution"


check("core 2 (my_top_p)", test_my_top_p)

# %% [markdown]
# ## Optional 3: SwiGLU's backward
#
# Name the intermediates of the forward: $g = xW_{gate}$, $u = xW_{in}$,
# $a = \operatorname{silu}(g)$, $h = a \odot u$, $y = hW_{out}$. Then go backward
# one line at a time:
#
# - $y = hW_{out}$: $dW_{out} = h^\top dy$, $dh = dy\,W_{out}^\top$;
# - $h = a \odot u$ (product rule): $da = dh \odot u$, $du = dh \odot a$;
# - $a = g\,\sigma(g)$: $dg = da \odot \sigma(g)\,(1 + g\,(1 - \sigma(g)))$;
# - $g = xW_{gate}$ and $u = xW_{in}$: $dW_{gate} = x^\top dg$, $dW_{in} = x^\top du$,
#   and since $x$ feeds both, $dx = dg\,W_{gate}^\top + du\,W_{in}^\top$.

# %%
def swiglu(x, W_gate, W_in, W_out):
    g = x @ W_gate
    return (g * nn.sigmoid(g) * (x @ W_in)) @ W_out


def my_swiglu_backward(x, W_gate, W_in, W_out, dy):
    g, u = x @ W_gate, x @ W_in  # (N, F) each
    s = nn.sigmoid(g)
    a = g * s  # silu(g)
    h = a * u
    dW_out = h.T @ dy  # (F, N) @ (N, C) -> (F, C)
    dh = dy @ W_out.T  # (N, C) @ (C, F) -> (N, F)
    da, du = dh * u, dh * a  # product rule
    dg = da * s * (1.0 + g * (1.0 - s))  # silu'(g)
    dW_gate, dW_in = x.T @ dg, x.T @ du  # (C, F) each
    dx = dg @ W_gate.T + du @ W_in.T  # x feeds both branches: the gradients add
    return dx, dW_gate, dW_in, dW_out


def test_my_swiglu_backward():
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(5, 4)), "W_gate": rng.normal(size=(4, 6)),
              "W_in": rng.normal(size=(4, 6)), "W_out": rng.normal(size=(6, 4))}
    dy = rng.normal(size=(5, 4))
    grads = dict(zip(["x", "W_gate", "W_in", "W_out"], my_swiglu_backward(**arrays, dy=dy)))
    report = gradcheck(lambda a: swiglu(a["x"], a["W_gate"], a["W_in"], a["W_out"]), arrays, grads, dy)
    print(report)
    assert report.ok


check("optional 3 (my_swiglu_backward)", test_my_swiglu_backward)

# %% [markdown]
# ## Stretch 4: min-p sampling
#
# Temperature first (on logits shifted by their maximum, as `probabilities`
# does), then a cut relative to the top probability: when the model is sure
# ($p_{max}$ near 1) almost everything else falls below $\text{min\_p} \cdot p_{max}$;
# when it is unsure, many tokens survive.

# %%
def my_min_p(logits, min_p, temperature=1.0):
    z = (logits - logits.max()) / temperature
    p = np.exp(z) / np.exp(z).sum()
    keep = p >= min_p * p.max()
    p = np.where(keep, p, 0.0)
    return p / p.sum()


def test_my_min_p():
    lg = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.allclose(my_min_p(lg, 0.2), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]), "0.05 < 0.2 * 0.5"
    assert np.allclose(my_min_p(lg, 0.0), probabilities(lg)), "min_p = 0 keeps everything"
    assert np.allclose(my_min_p(lg, 1.0), [1, 0, 0, 0]), "min_p = 1 keeps only the top token"
    p = my_min_p(logits[0, -1].astype(np.float64), 0.1, temperature=0.7)
    ref = probabilities(logits[0, -1].astype(np.float64), temperature=0.7)
    keep = ref >= 0.1 * ref.max()
    assert np.allclose(p, np.where(keep, ref, 0) / ref[keep].sum()), "with temperature 0.7"


check("stretch 4 (my_min_p)", test_my_min_p)
