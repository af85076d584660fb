# Source of notebooks/solutions/03_positional_indexing_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 03_positional`.

# %% [markdown]
# # Solutions · Stage 3 · positional encoding · *indexing*
#
# Worked solutions to the exercises of `03_positional_indexing.ipynb`. Try
# them there first. Each solution is followed by the notebook's own check,
# copied unchanged (a test keeps the two identical), so every check must say
# *passed*.

# %%
import numpy as np

from minitransformer import positional
from minitransformer.core import nn
from minitransformer.cli import load_course_model
from minitransformer.model import GPT

# The notebook's setup, the part the checks use.
model, tok, meta = load_course_model()
nopos = GPT(model.config.replace(positional="none"), params={**model.params, "pos": {}})
sentence = "The return statement leaves the current function call with"
ids = np.array([tok.encode(sentence)])  # (1, T)
T = ids.shape[1]
order = np.r_[np.random.default_rng(1).permutation(T - 1), T - 1]  # shuffle all but the last token
shuffled = ids[:, order]


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: ALiBi's biases
#
# The slopes are $2^{-8h/H}$ for $h = 1 \dots H$. The distance matrix
# $i - j$ comes from broadcasting a column of query positions against a row of
# key positions; multiplying by the slopes adds the head axis in front. Where
# $j > i$ the distance is negative: those entries become $-\infty$.

# %%
def alibi_slopes(n_heads):
    return 2.0 ** (-8.0 * np.arange(1, n_heads + 1) / n_heads)  # (H,)


def alibi_bias(T, n_heads):
    pos = np.arange(T)
    distance = pos[:, None] - pos[None, :]  # (T, 1) - (1, T) -> (T, T): i - j
    bias = alibi_slopes(n_heads)[:, None, None] * -distance  # (H, 1, 1) * (T, T) -> (H, T, T)
    return np.where(distance >= 0, bias, -np.inf)  # the future is masked


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
print(alibi_bias(5, 4)[0])

# %% [markdown]
# ## Core 2: the sinusoidal table
#
# One angle per (position, pair): $p\,\theta_k$ as an outer product, then sines
# into the even columns and cosines into the odd ones.

# %%
def my_sinusoidal(n_positions, d_model):
    theta = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)  # (C/2,)
    angle = np.arange(n_positions)[:, None] * theta[None, :]  # (P, 1) * (1, C/2) -> (P, C/2)
    pe = np.empty((n_positions, d_model))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle)
    return pe


def test_my_sinusoidal():
    got = my_sinusoidal(50, 16)
    assert got.shape == (50, 16), f"shape {got.shape}, expected (P, C) = (50, 16)"
    assert np.allclose(got[0], [0, 1] * 8), "position 0: every sin is 0 and every cos is 1"
    assert np.allclose(got, positional.sinusoidal_table(50, 16), atol=1e-5)


check("core 2 (my_sinusoidal)", test_my_sinusoidal)

# %% [markdown]
# ## Optional 3: ALiBi through a hook
#
# Take the log of the pattern (masked zeros become $-\infty$), add the biases
# for this pattern's $T$ and $H$, and apply the softmax again. The per-row
# constant that the log leaves behind cancels in the softmax. The future is
# $-\infty$ in both terms, so it stays 0.

# %%
def alibi_hook(pattern):
    B, H, T, _ = pattern.shape
    with np.errstate(divide="ignore"):
        log_pattern = np.log(pattern.astype(np.float64))  # scores minus a per-row constant; 0 -> -inf
    return nn.softmax(log_pattern + alibi_bias(T, H)).astype(pattern.dtype)  # (B, H, T, T)


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
# The model was never trained with these biases, so its predictions get worse
# (the steep heads now see only the last few tokens), but the order is visible
# again. A model trained with ALiBi from the start needs no position vectors at
# all, and it extrapolates to sequences longer than those it was trained on,
# because a distance it has seen means the same thing at any position.

# %%
hooks = {f"blocks.{i}.attn.hook_pattern": alibi_hook for i in range(nopos.config.n_layers)}
for name, run in [("learned positions", lambda x: model.forward(x)),
                  ("no positions", lambda x: nopos.forward(x)),
                  ("no positions + ALiBi", lambda x: nopos.run_with_hooks(x, hooks))]:
    loss, _ = nn.cross_entropy_forward(run(ids[:, :-1]), ids[:, 1:])
    print(f"{name:<22} loss on the sentence {loss:.2f} nats/token")

# %% [markdown]
# ## Stretch 4: the shift matrix
#
# For pair $k$ with angle $a = p\,\theta_k$ and shift $b = k'\theta_k$:
# $\sin(a + b) = \sin a \cos b + \cos a \sin b$ and
# $\cos(a + b) = \cos a \cos b - \sin a \sin b$. Written as a row vector
# $(\sin a, \cos a)$ times a $2 \times 2$ matrix:
#
# $$
# (\sin(a+b),\ \cos(a+b)) = (\sin a,\ \cos a)
# \begin{pmatrix} \cos b & -\sin b \\ \sin b & \cos b \end{pmatrix}.
# $$
#
# $M_k$ is block-diagonal with one such block per pair: a rotation per pair,
# which does not depend on $p$. Hence shifts compose by multiplying
# ($M_2 M_3 = M_5$), the property RoPE builds on.

# %%
def shift_matrix(k, d_model):
    theta = 10000.0 ** (-np.arange(0, d_model, 2) / d_model)  # (C/2,)
    M = np.zeros((d_model, d_model))
    for pair, b in enumerate(k * theta):
        i = 2 * pair  # columns i (sin) and i + 1 (cos)
        M[i:i + 2, i:i + 2] = [[np.cos(b), -np.sin(b)], [np.sin(b), np.cos(b)]]
    return M


def test_shift_matrix():
    PE64 = positional.sinusoidal_table(60, 16).astype(np.float64)
    for k in (1, 3, 10):
        M = shift_matrix(k, 16)
        assert M.shape == (16, 16), f"shape {M.shape}, expected (C, C)"
        assert np.allclose(PE64[:-k] @ M, PE64[k:], atol=1e-5), f"PE[p + {k}] == PE[p] @ M_{k}"
    assert np.allclose(shift_matrix(2, 16) @ shift_matrix(3, 16), shift_matrix(5, 16), atol=1e-6), "shifts compose"


check("stretch 4 (shift matrix)", test_shift_matrix)
