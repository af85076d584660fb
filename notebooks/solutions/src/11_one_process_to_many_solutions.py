# Source of notebooks/solutions/11_one_process_to_many_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 11_one`.

# %% [markdown]
# # Solutions · From one process to many
#
# Worked solutions to the exercises of `11_one_process_to_many.ipynb`. Try them
# there first: a solution read before the attempt teaches much less than one
# read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import numpy as np

from minitransformer.core.config import ModelConfig
from minitransformer.core.tree import flatten, set_path
from minitransformer.model import GPT
from minitransformer.scaleout.traffic import ring_allreduce
from minitransformer.training import get_batch
from minitransformer.training.optimizer import ShardedAdamW

tokens = np.random.default_rng(1).integers(0, 64, 5000)  # the notebook's token stream


def float64_model(preset="toy", seed=0):
    model = GPT(ModelConfig.preset(preset), seed=seed)
    for name, a in flatten(model.params).items():
        set_path(model.params, name, a.astype(np.float64))
    return model


def flat_grads(model, x, y):
    model.loss(x, y)
    return flatten(model.backward())


def ring_allreduce_numpy(arrays):
    """Ring all-reduce of N equal arrays; returns (each rank's result, elements each rank sent)."""
    N = len(arrays)
    chunks = [np.array_split(a.astype(np.float64), N) for a in arrays]  # chunks[rank][c]
    sent = [0] * N
    for step in range(N - 1):  # reduce-scatter: rank r sends chunk (r - step) to r + 1
        outgoing = [(r, (r - step) % N, chunks[r][(r - step) % N].copy()) for r in range(N)]
        for r, c, data in outgoing:
            chunks[(r + 1) % N][c] += data
            sent[r] += data.size
    for step in range(N - 1):  # all-gather: rank r passes the finished chunk (r + 1 - step)
        outgoing = [(r, (r + 1 - step) % N, chunks[r][(r + 1 - step) % N].copy()) for r in range(N)]
        for r, c, data in outgoing:
            chunks[(r + 1) % N][c] = data
            sent[r] += data.size
    return [np.concatenate(c) for c in chunks], sent


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: which rows are mine?
#
# Rank r of N takes the r-th block of B/N consecutive rows. Blocks, not every
# N-th row (`slice(r, B, N)` would work as well, as long as every rank uses the
# same rule): what matters is that the shards cover the batch exactly once.

# %%
def my_rows(B, N, r):
    b = B // N
    return slice(r * b, (r + 1) * b)


print([np.arange(8)[my_rows(8, 2, r)].tolist() for r in range(2)])


def test_my_rows():
    for B, N in [(8, 1), (8, 2), (16, 4), (12, 3)]:
        rows = np.concatenate([np.arange(B)[my_rows(B, N, r)] for r in range(N)])
        assert rows.tolist() == list(range(B)), (B, N)
        assert all(len(np.arange(B)[my_rows(B, N, r)]) == B // N for r in range(N))
    m = float64_model()
    x, y = get_batch(tokens, 8, 16, np.random.default_rng(7))
    parts = [flat_grads(m, x[my_rows(8, 2, r)], y[my_rows(8, 2, r)]) for r in range(2)]
    whole = flat_grads(m, x, y)
    assert max(np.abs(whole[k] - (parts[0][k] + parts[1][k]) / 2).max() for k in whole) < 1e-12


check("core 1 (my_rows)", test_my_rows)

# %% [markdown]
# ## Core 2: bytes a ring all-reduce sends per rank
#
# N - 1 steps of reduce-scatter and N - 1 of all-gather, one chunk of size/N each:
# 2(N - 1)/N x size. It tends to twice the size, never more.

# %%
def my_ring_bytes(size, N):
    return 2 * (N - 1) / N * size


print([my_ring_bytes(1.0, N) for N in (2, 4, 8, 64)])


def test_my_ring_bytes():
    for N in (2, 3, 4, 8, 64):
        assert abs(my_ring_bytes(1000.0, N) - ring_allreduce(N, 1, 1000.0).bytes[0]) < 1e-9, N
    _, sent = ring_allreduce_numpy([np.zeros(24) for _ in range(3)])
    assert sent == [my_ring_bytes(24, 3)] * 3


check("core 2 (my_ring_bytes)", test_my_ring_bytes)

# %% [markdown]
# ## Optional 3: ZeRO-1's slice
#
# Slices of S = ceil(n/N) numbers; rank r starts at r·S, and both ends are
# clipped to n, so the last slice is shorter (or empty, when N > n).

# %%
def my_shard(n, N, r):
    S = -(-n // N)  # ceil(n / N) in integers
    return min(r * S, n), min((r + 1) * S, n)


print([my_shard(10, 3, r) for r in range(3)])


def test_my_shard():
    for n, N in [(10, 3), (28032, 4), (7, 7), (5, 8)]:
        bounds = [my_shard(n, N, r) for r in range(N)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(bounds[r][1] == bounds[r + 1][0] for r in range(N - 1))
    opt = ShardedAdamW(GPT(ModelConfig.preset("toy"), seed=0).params, 2, 3)
    assert my_shard(opt.buffer.size, 3, 2) == (opt.lo, opt.hi)


check("optional 3 (my_shard)", test_my_shard)

# %% [markdown]
# ## Stretch 4: the global loss from unequal shards
#
# The global mean is the total loss over all real targets divided by their
# number. Rank r's total is its mean times its count, so the global loss is the
# count-weighted mean of the shard means. In a real run, each rank all-reduces the
# pair (loss x count, count), and scales its gradient by count / total count
# instead of 1/N.

# %%
def my_global_loss(losses, counts):
    return sum(l * c for l, c in zip(losses, counts)) / sum(counts)


def test_my_global_loss():
    m = float64_model()
    x, y = get_batch(tokens, 8, 16, np.random.default_rng(9))
    y = y.copy()
    y[:4, 5:] = -100  # the first rank's rows are mostly padding
    whole = m.loss(x, y)
    losses = [m.loss(x[r * 4:(r + 1) * 4], y[r * 4:(r + 1) * 4]) for r in range(2)]
    counts = [int((y[r * 4:(r + 1) * 4] != -100).sum()) for r in range(2)]
    assert abs(my_global_loss(losses, counts) - whole) < 1e-12
    assert abs(np.mean(losses) - whole) > 1e-3  # the naive mean of means is wrong here


check("stretch 4 (my_global_loss)", test_my_global_loss)
