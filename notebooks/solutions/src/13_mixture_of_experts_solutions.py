# Source of notebooks/solutions/13_mixture_of_experts_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 13_mixture`.

# %% [markdown]
# # Solutions · Stage 5, variant · Mixture of experts · *processing by specialists*
#
# Worked solutions to the exercises of `13_mixture_of_experts.ipynb`. Try them
# there first: a solution read before the attempt teaches much less than one
# read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import numpy as np

from minitransformer.feedforward import moe_router
from minitransformer.scaleout.model_traffic import deepseek_v3_params_per_gpu
from minitransformer.scaleout.traffic import moe_dispatch


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: gate values by hand
#
# Take each token's affinities of its chosen experts (`take_along_axis` picks
# column `ids[n, k]` of row n), divide by their sum when normalising, and scale by
# `r`. The bias plays no part: it chose `ids`, and that is all it does.

# %%
def my_gates(s, ids, r, normalize):
    chosen = np.take_along_axis(s, ids, axis=1)  # (N, E) -> (N, K)
    if normalize:
        chosen = chosen / chosen.sum(axis=1, keepdims=True)  # each row sums to 1
    return r * chosen


def test_gates():
    rng = np.random.default_rng(3)
    s = rng.random((20, 8))
    ids = moe_router.select_experts(s, rng.normal(0, 0.1, 8), k=3)
    for r, normalize in ((1.0, True), (2.5, True), (2.5, False)):
        assert np.allclose(my_gates(s, ids, r, normalize), moe_router.gate_values(s, ids, r, normalize))


check("core 1 (gates)", test_gates)

# %% [markdown]
# ## Core 2: a routing table's network copies
#
# The node of expert e is `e // (E / nodes)`; the node of row r is
# `r // (n / nodes)`. A token needs one copy for each *distinct* remote node among
# its experts: two experts on the same remote node share one copy (they are
# reached over NVLink from there). On the hand-made table: token 0 (node 0) has
# experts 2 and 3, both on node 1: one copy; token 1 has 0 (home) and 2: one;
# token 2 (node 1) is all at home: none; token 3 has 0 and 1 on node 0: one.
# Three in all.

# %%
def node_copies(table, experts, nodes):
    n = len(table)
    home = np.arange(n) // (n // nodes)  # (n,) node of each sender
    where = table // (experts // nodes)  # (n, K) node of each chosen expert
    total = 0
    for row, h in zip(where, home):
        total += len(set(row.tolist()) - {int(h)})
    return total


def test_node_copies():
    table = np.array([[2, 3], [0, 2], [2, 3], [0, 1]])
    assert node_copies(table, 4, 2) == 3
    rng = np.random.default_rng(0)
    big = rng.integers(0, 16, size=(64, 4))
    assert node_copies(big, 16, 4) == moe_dispatch(4, 1, experts=16, hidden=1, routing=big).copies["dedup"]


check("core 2 (node copies)", test_node_copies)

# %% [markdown]
# ## Stretch 3: DeepSeek-V3's routed experts
#
# A SwiGLU expert has three matrices of 7,168 x 2,048: 44,040,192 parameters.
# Times 256 experts and 58 MoE layers: **653,908,770,816**, about 654 billion of
# the model's 671 billion. One token uses K = 8 of the 256 experts of a layer:
# 1/32 of them, about 20.4 billion, which with the attention, the shared experts
# and the embeddings makes the published 37 billion active parameters.

# %%
def v3_routed():
    """Return (routed_expert_parameters, fraction_used_per_token)."""
    per_expert = 3 * 7168 * 2048  # W_gate, W_in, W_out
    return 58 * 256 * per_expert, 8 / 256


print("routed expert parameters: {:,}".format(v3_routed()[0]))


def test_v3():
    routed, used = v3_routed()
    assert routed == deepseek_v3_params_per_gpu()["routed"]
    assert abs(used - 8 / 256) < 1e-12


check("stretch 3 (V3 routed experts)", test_v3)
