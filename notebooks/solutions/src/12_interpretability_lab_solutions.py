# Source of notebooks/solutions/12_interpretability_lab_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 12_interpretability`.

# %% [markdown]
# # Solutions · An interpretability lab
#
# Worked solutions to the exercises of `12_interpretability_lab.ipynb`. Try them
# there first: a solution read before the attempt teaches much less than one
# read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import numpy as np

from minitransformer.cli import load_course_model
from minitransformer.lab import detectors, dla, patching

# The notebook's setup, the part the checks use.
model, tok, meta = load_course_model()
T = 6
previous = np.eye(T, k=-1)
previous[0, 0] = 1.0
inducting = np.zeros((T, T))
inducting[:3, 0] = 1.0
for t in range(3, T):
    inducting[t, t - 2] = 1.0
toy_pattern = np.stack([previous, inducting])[None]  # (B=1, H=2, T, T)
clean_ids = np.array([tok.encode_ordinary("x = (1, 2, 3")])
close_paren, close_bracket = tok.encode_ordinary(")")[0], tok.encode_ordinary("]")[0]
metric = patching.LogitDiff(correct=close_paren, incorrect=close_bracket)
logits, cache = model.run_with_cache(clean_ids)


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: the logit difference
#
# `logits[:, -1]` is the last position of every row, (B, V); two columns of it,
# subtracted, then the mean over the batch. `float` turns numpy's scalar into a
# plain number.

# %%
def my_logit_diff(logits, correct, incorrect):
    last = logits[:, -1]  # (B, T, V) -> (B, V)
    return float(np.mean(last[:, correct] - last[:, incorrect]))


def test_my_logit_diff():
    assert np.isclose(my_logit_diff(logits, close_paren, close_bracket), metric(logits), atol=1e-5)
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(3, 4, 10))
    expected = np.mean(batch[:, -1, 7] - batch[:, -1, 2])
    assert np.isclose(my_logit_diff(batch, 7, 2), expected), "the last position, averaged over the batch"


check("core 1 (my_logit_diff)", test_my_logit_diff)

# %% [markdown]
# ## Core 2: a previous-token detector
#
# The attention of query $t$ on key $t - 1$ is the first sub-diagonal of each
# (T, T) pattern: `np.diagonal(pattern, offset=-1, axis1=-2, axis2=-1)` gives it
# as (B, H, T - 1), one value per query $t = 1 \dots T-1$. The mean over the
# batch and those queries leaves (H,). Query 0 is left out: it has no previous
# token, and counting it would punish every head for the first position.

# %%
def my_previous_token_score(pattern):
    below = np.diagonal(pattern, offset=-1, axis1=-2, axis2=-1)  # (B, H, T-1): pattern[b, h, t, t-1]
    return below.mean(axis=(0, 2))  # (H,)


def test_my_previous_token_score():
    assert np.allclose(my_previous_token_score(toy_pattern), [1.0, 0.2]), "query 0 has no previous token"
    for layer in range(model.config.n_layers):
        p = cache["pattern", layer]
        assert np.allclose(my_previous_token_score(p), detectors.previous_token_score(p), atol=1e-6), f"layer {layer}"


check("core 2 (my_previous_token_score)", test_my_previous_token_score)

# %% [markdown]
# ## Optional 3: one head's direct logit attribution
#
# The head's output at the last position is a (C,) vector. LayerNorm subtracts the
# mean over the width, divides by the scale and multiplies by the gain; with the
# scale frozen at the clean run's value, each of these is linear, so the head's
# share goes through them on its own. The tied head scores a token with its row of
# $W_E$. The bias of the norm belongs to no head (it is its own contribution).

# %%
def my_head_dla(layer, head, token):
    D = model.config.d_head
    z = cache["z", layer][0, -1, head]  # (D,): the head's retrieval at the last position
    W_O = model.params["blocks"][layer]["attn"]["W_O"][head * D:(head + 1) * D]  # (D, C)
    out = z @ W_O  # (C,): what the head writes into the stream
    scale = cache["ln_final.hook_scale"][0, -1, 0]  # the clean run's scale, frozen
    normed = (out - out.mean()) / scale * model.params["ln_final"]["w"]  # (C,)
    return float(normed @ model.params["embed"]["W_E"][token])  # the token's row of the tied head


def test_my_head_dla():
    full = dla.direct_logit_attribution(model, clean_ids, token_ids=[close_paren])
    for layer, head in [(0, 1), (3, 0), (2, 3)]:
        expected = full.of(f"L{layer}H{head}")[0, -1, 0]
        assert np.isclose(my_head_dla(layer, head, close_paren), expected, atol=1e-4), f"L{layer}H{head}"


check("optional 3 (my_head_dla)", test_my_head_dla)

# %% [markdown]
# ## Stretch 4: the heads that matter for a prompt
#
# A prompt of our choice: a function call whose parenthesis must close,
# corrupted into a subscript whose bracket must close. The two tokenize to the
# same length, differing at one position. Patching every head (denoising) ranks
# them; the top heads, taken together, must restore at least half. We let the
# patching choose, rather than guessing from patterns.

# %%
my_clean, my_corrupted = "return f(x, y", "return f[x, y"
my_correct, my_incorrect = ")", "]"
a, b = np.array([tok.encode_ordinary(my_clean)]), np.array([tok.encode_ordinary(my_corrupted)])
m = patching.LogitDiff(tok.encode_ordinary(my_correct)[0], tok.encode_ordinary(my_incorrect)[0])
_, my_clean_cache = model.run_with_cache(a)
ranking = patching.patch_heads(model, b, my_clean_cache, m)  # (L, H): the metric with one head restored
print("metric with one head restored (layers x heads):\n", np.round(ranking, 2))
order = np.argsort(-ranking, axis=None)[:2]
my_heads = [tuple(int(v) for v in np.unravel_index(i, ranking.shape)) for i in order]
print("chosen:", my_heads)


def test_my_heads():
    if my_heads is None or my_clean is None:
        raise NotImplementedError
    a, b = np.array([tok.encode_ordinary(my_clean)]), np.array([tok.encode_ordinary(my_corrupted)])
    assert a.shape == b.shape, f"the prompts tokenize to {a.shape[1]} and {b.shape[1]} tokens: make them equal"
    right, wrong = tok.encode_ordinary(my_correct), tok.encode_ordinary(my_incorrect)
    assert len(right) == len(wrong) == 1, "each answer must be exactly one token"
    m = patching.LogitDiff(right[0], wrong[0])
    clean_logits, clean_cache = model.run_with_cache(a)
    clean, corrupted = m(clean_logits), m(model.forward(b))
    assert clean > 0 and clean - corrupted > 0.5, f"clean {clean:.2f}, corrupted {corrupted:.2f}: choose a clearer pair"
    assert 1 <= len(my_heads) <= 3, "at most three heads"

    def restore(layer):
        heads = [h for l, h in my_heads if l == layer]

        def put(z):
            z = z.copy()
            z[:, :, heads] = clean_cache[f"blocks.{layer}.attn.hook_z"][:, :, heads]
            return z
        return put

    hooks = {f"blocks.{l}.attn.hook_z": restore(l) for l in {l for l, _ in my_heads}}
    restored = (m(model.run_with_hooks(b, hooks)) - corrupted) / (clean - corrupted)
    assert restored >= 0.5, f"these heads restore {restored:.0%} of the difference; look for others"


check("stretch 4 (my_heads)", test_my_heads)
