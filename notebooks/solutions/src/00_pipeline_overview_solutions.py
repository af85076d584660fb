# Source of notebooks/solutions/00_pipeline_overview_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 00_pipeline`.

# %% [markdown]
# # Solutions · Overview · the whole pipeline on one sentence
#
# Worked solutions to the exercises of `00_pipeline_overview.ipynb`. Try them
# there first. Each solution is followed by the notebook's own check, copied
# unchanged (a test keeps the two identical), so every check must say *passed*.

# %%
import numpy as np

from minitransformer.core import nn
from minitransformer.cli import load_course_model
from minitransformer.trace.lens import logit_lens

# The notebook's setup, the part the checks use.
model, tok, meta = load_course_model()
sentence = "The return statement leaves the current function call with"
ids = np.array([tok.encode(sentence)])  # (B, T) = (1, T)
logits, cache = model.run_with_cache(ids)
T = ids.shape[1]


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: shapes
#
# One sentence, so $B = 1$. The residual stream is $(B, T, C)$; a pattern has
# one $(T, T)$ matrix per head, $(B, H, T, T)$; the MLP's hidden layer is $F =
# 4C = 512$ wide; the logits score all $V = 1024$ tokens at every position.

# %%
C, H, F, V = 128, 4, 4 * 128, 1024
my_shapes = {
    "hook_embed": (1, T, C),
    "blocks.2.attn.hook_pattern": (1, H, T, T),
    "blocks.2.mlp.hook_post": (1, T, F),
    "hook_logits": (1, T, V),
}


def test_shapes():
    if any(v is None for v in my_shapes.values()):
        raise NotImplementedError
    for name, shape in my_shapes.items():
        assert tuple(shape) == cache[name].shape, f"{name}: you wrote {shape}, the cache holds {cache[name].shape}"


check("core 1 (shapes)", test_shapes)

# %% [markdown]
# ## Core 2: the head by hand
#
# The cached $h$ is what the head reads, so $\text{logits} = h\, W_E^\top$ (the
# tied head has no bias of its own), then a softmax. Computing the softmax in
# float64 avoids rounding in the comparison. Reading the residual stream *before*
# the final norm (`blocks.3.hook_resid_post`) instead gives the right shape and a
# distribution that sums to 1, but the wrong one: the check catches it.

# %%
def my_next_token_probs(cache):
    h = cache["unembed.hook_in"][0, -1]  # (C,): the last position, as the head reads it
    W_E = model.params["embed"]["W_E"]  # (V, C)
    return nn.softmax((W_E @ h).astype(np.float64))  # (V, C) @ (C,) -> (V,)


def test_next_token_probs():
    p = my_next_token_probs(cache)
    assert p.shape == (model.config.vocab_size,), f"shape {p.shape}: one probability per token of the vocabulary"
    assert np.isclose(p.sum(), 1.0, atol=1e-4), "probabilities sum to 1"
    assert np.allclose(p, nn.softmax(logits[0, -1].astype(np.float64)), atol=1e-5)


check("core 2 (next-token probabilities)", test_next_token_probs)

# %% [markdown]
# ## Optional 3: ablating each layer's attention
#
# The hook returns an array of zeros of the same shape; the loss compares the
# logits at positions $0..T-2$ with the ids at $1..T-1$. The layer whose removal
# raises the loss most is the one the prediction needs most (printed below).
# Removing a layer can also *lower* the loss on one sentence: twelve tokens are
# a small sample, and a layer that helps on average can hurt on a given text.
# Before drawing a conclusion about a layer, repeat the measurement on
# held-out text (a few thousand tokens of `split_text(load_corpus("pydoc"))[1]`).

# %%
def ablated_loss(layer):
    zero = {f"blocks.{layer}.hook_attn_out": lambda a: np.zeros_like(a)}
    out = model.run_with_hooks(ids[:, :-1], zero)  # (1, T-1, V)
    loss, _ = nn.cross_entropy_forward(out, ids[:, 1:])
    return loss


def test_ablated_loss():
    base, _ = nn.cross_entropy_forward(model.forward(ids[:, :-1]), ids[:, 1:])
    losses = [ablated_loss(layer) for layer in range(model.config.n_layers)]
    for layer, loss in enumerate(losses):
        zero = {f"blocks.{layer}.hook_attn_out": lambda a: np.zeros_like(a)}
        expected, _ = nn.cross_entropy_forward(model.run_with_hooks(ids[:, :-1], zero), ids[:, 1:])
        assert np.isclose(loss, expected, rtol=1e-5), f"layer {layer}: {loss} but expected {expected}"
    assert max(losses) > base, "removing attention should hurt somewhere"
    print(f"  loss {base:.2f} intact; without each layer's attention: " + ", ".join(f"{v:.2f}" for v in losses))


check("optional 3 (ablation)", test_ablated_loss)
losses = [ablated_loss(layer) for layer in range(model.config.n_layers)]
print(f"the model needs layer {int(np.argmax(losses))}'s attention most")

# %% [markdown]
# ## Stretch 4: the logit lens
#
# LayerNorm: subtract the mean, divide by the standard deviation (with `eps`
# inside the square root), multiply by the gain `w`, add the bias `b`. Then the
# tied head and an argmax. After the last block this is exactly the model's
# own computation, which the check confirms.

# %%
def my_logit_lens(cache, layer):
    x = cache[f"blocks.{layer}.hook_resid_post"][0, -1].astype(np.float64)  # (C,)
    p = model.params["ln_final"]
    h = (x - x.mean()) / np.sqrt(x.var() + model.config.norm_eps) * p["w"] + p["b"]  # LayerNorm
    return int(np.argmax(model.params["embed"]["W_E"] @ h))  # (V, C) @ (C,) -> (V,)


def test_logit_lens():
    reference = logit_lens(model, cache)
    for layer in range(model.config.n_layers):
        assert my_logit_lens(cache, layer) == reference[layer]["top_ids"][0], f"layer {layer}"
    assert my_logit_lens(cache, model.config.n_layers - 1) == int(np.argmax(logits[0, -1])), \
        "after the last block the lens is the model's own prediction"


check("stretch 4 (logit lens)", test_logit_lens)
for layer in range(model.config.n_layers):
    print(f"after block {layer}: {tok.decode([my_logit_lens(cache, layer)])!r}")
