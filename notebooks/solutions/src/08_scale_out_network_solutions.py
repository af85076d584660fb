# Source of notebooks/solutions/08_scale_out_network_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 08_scale`.

# %% [markdown]
# # Solutions · Scale-out · DeepSeek-V3's multi-plane fat-tree
#
# Worked solutions to the exercises of `08_scale_out_network.ipynb`. Try them
# there first: a solution read before the attempt teaches much less than one
# read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import numpy as np

from minitransformer.scaleout import metrics
from minitransformer.scaleout.routing import route
from minitransformer.scaleout.topology import ft2, mpft
from minitransformer.scaleout.traffic import moe_dispatch, ring_allreduce


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: count a fat-tree
#
# The construction of section 2, counted. There are $k$ leaves, each with $k/2$
# ports down to endpoints: $k^2/2$ endpoints. Each leaf has one uplink to each
# of the $k/2$ spines: $k \cdot k/2$ switch-to-switch cables (the spines' $k$
# ports are exactly the $k$ leaves' uplinks to them, so no cable is counted
# twice). Switches: $k$ leaves and $k/2$ spines, $3k/2$. For $k$ = 64: 2,048
# endpoints, 96 switches, 2,048 links, the FT2 row of Table 3.

# %%
def my_ft2_counts(k):
    endpoints = k * (k // 2)  # k leaves, k/2 endpoints each
    switches = k + k // 2  # k leaves, k/2 spines
    links = k * (k // 2)  # every leaf to every spine, once
    return endpoints, switches, links


print("k = 64:", my_ft2_counts(64))


def test_ft2_counts():
    for k in [4, 8, 16, 32, 64, 128]:
        c = ft2(k).counts()
        assert my_ft2_counts(k) == (c["endpoints"], c["switches"], c["links"]), f"k={k}"


check("core 1 (my_ft2_counts)", test_ft2_counts)

# %% [markdown]
# ## Core 2: network copies under node-limited routing
#
# Map every expert to its node, `e // 32`. An expert on the sender's own node
# is reached over NVLink and costs no network copy. One copy per expert counts
# the remote experts; one copy per node counts the *distinct* remote nodes, since
# the receiving node fans the token out to its experts over NVLink. In the
# example, experts 0 and 1 are local, 40, 41, 42 sit on node 1, 100 on node 3,
# 200 and 201 on node 6: 6 remote experts on 3 remote nodes.

# %%
def my_copies(experts, src_node):
    nodes = [e // 32 for e in experts]
    remote = [n for n in nodes if n != src_node]
    return len(remote), len(set(remote))  # (per_expert, dedup)


print(my_copies([0, 1, 40, 41, 42, 100, 200, 201], 0))


def test_copies():
    assert my_copies([0, 1, 40, 41, 42, 100, 200, 201], 0) == (6, 3)
    m = moe_dispatch(8, 8, tokens_per_gpu=16, seed=5)
    src = (np.arange(m.tokens) // 16) // 8  # tokens are ordered by source GPU
    per_expert, dedup = zip(*(my_copies(row, s) for row, s in zip(m.experts.tolist(), src)))
    assert (sum(per_expert), sum(dedup)) == (m.copies["per_expert"], m.copies["dedup"])


check("core 2 (my_copies)", test_copies)

# %% [markdown]
# ## Optional 3: the expected worst uplink under random hashing
#
# One throw is `n` random uplink numbers; `np.bincount` counts the flows on each
# uplink (`minlength=n` keeps the empty ones) and the maximum is the worst. All
# trials at once: draw a (trials, n) table and count each row. Adding
# `n * row index` to the uplink numbers gives every row its own range of bins,
# so one `bincount` does it.
#
# For $n = 32$ the average is about 3.5: a balanced assignment would put one flow
# on every uplink, so the ring, which waits for its slowest hop, runs 3.5 times
# slower. This is the balls-into-bins maximum, which grows like
# $\ln n / \ln \ln n$: slowly, but without bound.

# %%
def expected_worst(n, trials, rng):
    throws = rng.integers(0, n, size=(trials, n))  # uplink of each flow, one row per trial
    counts = np.bincount((throws + n * np.arange(trials)[:, None]).ravel(), minlength=n * trials)
    return counts.reshape(trials, n).max(axis=1).mean()  # flows on the busiest uplink, averaged


for n in [8, 32, 128]:
    print(f"n = {n:3d}: expected worst uplink {expected_worst(n, 2000, np.random.default_rng(0)):.2f} flows")


def test_expected_worst():
    est = expected_worst(32, 2000, np.random.default_rng(0))
    assert 3.2 < est < 3.8, est
    tp = mpft(64, planes=1, nodes=64)
    ring = ring_allreduce(64, 1, 1.0, "rail", interleave=32)
    # the worst of leaf 0's 32 uplinks, in flows, over 100 hash seeds
    ecmp = np.mean([metrics.uplink_loads(route(tp, ring, "ecmp", seed=s))[0].max() / ring.bytes[0] for s in range(100)])
    assert abs(ecmp - est) < 0.4, (ecmp, est)


check("optional 3 (expected_worst)", test_expected_worst)

# %% [markdown]
# ## Stretch 4: the smallest radix for 100,000 GPUs
#
# Each plane is a two-layer fat-tree of $k^2/2$ endpoints, one GPU each, so 8
# planes hold $8 \cdot k^2/2 = 4k^2$ GPUs. $4k^2 \ge 100{,}000$ needs
# $k \ge \sqrt{25{,}000} \approx 158.1$; $k$ = 158 gives 99,856 GPUs, just short,
# so the smallest even radix is **160** (102,400 GPUs). Each plane has $3k/2 = 240$
# switches, so 8 planes need **1,920**: about one switch for 53 GPUs, and still
# at most two switch layers between any two GPUs of a plane.

# %%
MY_K = next(k for k in range(2, 1000, 2) if 8 * k ** 2 // 2 >= 100_000)
MY_SWITCHES = 8 * (MY_K + MY_K // 2)  # 8 planes of k leaves and k/2 spines
print(f"k = {MY_K}: {8 * MY_K ** 2 // 2:,} GPUs, {MY_SWITCHES:,} switches")


def test_radix():
    if MY_K is None or MY_SWITCHES is None:
        raise NotImplementedError
    assert 8 * MY_K ** 2 // 2 >= 100_000 and 8 * (MY_K - 2) ** 2 // 2 < 100_000, "not the smallest even k"
    assert mpft(MY_K, nodes=MY_K ** 2 // 2).counts()["switches"] == MY_SWITCHES


check("stretch 4 (radix)", test_radix)
