"""Every core at work: a training step split into batch shards, one thread each (core/cores.py).

The sharded step must compute the gradient of the same mean loss as the one-thread loop
(``GPT(config, threads=1)``), in float64 to rounding, with padding, MoE, dropout and the
callbacks the distributed trainer uses; and it must leave BLAS as it found it.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minitransformer import GPT, ModelConfig
from minitransformer.core import cores
from minitransformer.core.tree import flatten, to_float64
from minitransformer.training import AdamW


@pytest.fixture(autouse=True)
def split_even_toy_batches(monkeypatch):
    """The toy model's batches are below the work a shard needs (`cores.MIN_SHARD_VALUES`): split them anyway."""
    monkeypatch.setattr(cores, "MIN_SHARD_VALUES", 1)


def test_small_batches_stay_on_one_thread_large_ones_split(monkeypatch):
    monkeypatch.setattr(cores, "MIN_SHARD_VALUES", 1 << 16)
    assert len(cores.shard_slices(16, 2, 16 * 32)) == 1  # toy: 16 sequences of 16 x 32 values
    assert len(cores.shard_slices(16, 2, 128 * 128)) == 2  # tiny
    assert len(cores.shard_slices(3, 8, 128 * 128)) == 1  # 3 x 16K values: less than one shard's worth
    assert len(cores.shard_slices(3, 8, 256 * 256)) == 3


@given(batch=st.integers(1, 64), threads=st.integers(1, 12))
@settings(max_examples=200, deadline=None)
def test_shards_cover_the_batch_in_order_with_sizes_differing_by_at_most_one(batch, threads):
    shards = cores.shard_slices(batch, threads)
    assert len(shards) == min(batch, threads)
    assert shards[0].start == 0 and shards[-1].stop == batch
    assert all(a.stop == b.start for a, b in zip(shards, shards[1:]))
    sizes = [s.stop - s.start for s in shards]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_threads_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match="threads must be a positive int"):
        GPT("toy", threads=bad)


def test_default_is_one_thread_per_available_core():
    assert GPT("toy").threads == cores.available() >= 1
    assert GPT("toy", threads=3).threads == 3


def _pair(cfg, threads=3, seed=0):
    """The same float64 model twice: the one-thread loop and ``threads`` shards."""
    params = to_float64(GPT(cfg, seed=seed).params)
    return GPT(cfg, params=params, threads=1), GPT(cfg, params=to_float64(params), threads=threads)


def _batch(cfg, B, seed=1):
    rng = np.random.default_rng(seed)
    T = cfg.context_length
    return rng.integers(0, cfg.vocab_size, (B, T)), rng.integers(0, cfg.vocab_size, (B, T))


def _assert_same_step(one, many, x, y):
    """The sharded model's loss and gradients on (x, y) are the one-thread model's (float64)."""
    assert many.loss(x, y) == pytest.approx(one.loss(x, y), rel=1e-13)
    _assert_same_grads(one.backward(), many.backward())


def _assert_same_grads(g1, g2, tol=1e-12):
    a, b = flatten(g1), flatten(g2)
    assert a.keys() == b.keys()
    scale = max(float(np.abs(v).max()) for v in a.values())
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=0, atol=tol * scale, err_msg=k)


@pytest.mark.parametrize("B,threads", [(7, 2), (7, 3), (8, 4), (2, 8)])
def test_sharded_step_is_the_one_thread_step(B, threads):
    cfg = ModelConfig.preset("toy")
    one, many = _pair(cfg, threads)
    _assert_same_step(one, many, *_batch(cfg, B))


def test_padding_weights_each_shard_by_its_kept_targets():
    # shard 0 keeps 3 targets, shard 1 keeps 40, one row keeps none: a plain average of the
    # shards' means would be wrong
    cfg = ModelConfig.preset("toy")
    one, many = _pair(cfg, 2)
    x, y = _batch(cfg, 6)
    y[0, 3:] = -100
    y[1:3] = -100
    y[4, :4] = -100
    _assert_same_step(one, many, x, y)


def test_every_target_ignored_gives_zero_gradients_as_before():
    cfg = ModelConfig.preset("toy")
    one, many = _pair(cfg, 2)
    x, y = _batch(cfg, 4)
    y[:] = -100
    assert many.loss(x, y) == one.loss(x, y) == 0.0
    assert all(not np.any(g) for g in flatten(many.backward()).values())


def test_moe_expert_loads_are_summed_over_the_shards():
    cfg = ModelConfig.preset("toy", ffn="moe", n_experts=8, experts_per_token=2, d_expert=8)
    one, many = _pair(cfg, 2)
    x, y = _batch(cfg, 5)
    one.loss(x, y), many.loss(x, y)
    for a, b in zip(one.last_expert_load, many.last_expert_load):
        np.testing.assert_array_equal(a, b)
    assert sum(int(a.sum()) for a in many.last_expert_load) == 2 * 5 * cfg.context_length * cfg.n_layers
    _assert_same_grads(one.backward(), many.backward())


def test_a_balance_loss_keeps_the_batch_whole():
    # the sequence-wise balance loss is a mean over the batch's rows: it is not split
    cfg = ModelConfig.preset("toy", ffn="moe", n_experts=8, experts_per_token=2, d_expert=8, balance_loss=0.3)
    one, many = _pair(cfg, 2)
    x, y = _batch(cfg, 4)
    assert many.loss(x, y) == one.loss(x, y)
    _assert_same_grads(one.backward(), many.backward(), tol=0)


def test_on_grads_sees_the_summed_gradients_in_backward_order():
    cfg = ModelConfig.preset("toy")
    one, many = _pair(cfg, 2)
    x, y = _batch(cfg, 4)
    seen = {1: [], 2: []}
    one.loss(x, y)
    g1 = one.backward(on_grads=lambda name, g: seen[1].append(name))
    many.loss(x, y)
    g2 = many.backward(on_grads=lambda name, g: seen[2].append((name, g)))
    assert [n for n, _ in seen[2]] == seen[1]
    for name, g in seen[2]:
        part = g2["blocks"][int(name.split(".")[1])] if name.startswith("blocks.") else g2[name]
        assert g is part
    _assert_same_grads(g1, g2)


def test_dropout_draws_reproducibly_from_the_given_generator():
    cfg = ModelConfig.preset("toy", dropout=0.2)
    params = GPT(cfg, seed=0).params
    x, y = _batch(cfg, 4)
    a = GPT(cfg, params=params, threads=2).loss(x, y, rng=np.random.default_rng(5), train=True)
    b = GPT(cfg, params=params, threads=2).loss(x, y, rng=np.random.default_rng(5), train=True)
    c = GPT(cfg, params=params, threads=2).loss(x, y, rng=np.random.default_rng(6), train=True)
    plain = GPT(cfg, params=params, threads=2).loss(x, y)
    assert a == b and a != c and a != plain


def test_a_shard_error_is_raised_in_the_caller():
    cfg = ModelConfig.preset("toy")
    model = GPT(cfg, threads=2)
    x, y = _batch(cfg, 4)
    y[3, 0] = cfg.vocab_size + 5  # in the second shard
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.loss(x, y)


def test_blas_threads_are_restored_after_the_step():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    cfg = ModelConfig.preset("toy")
    model = GPT(cfg, threads=2)
    x, y = _batch(cfg, 4)
    model.loss(x, y)
    model.backward()
    after = [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert after == before


def test_a_nested_sharded_region_runs_on_the_calling_thread():
    # a callback that itself trains (here: another model's step) must not deadlock
    inner = GPT("toy", threads=2)
    cfg = inner.config
    x, y = _batch(cfg, 4)

    def work(i):
        loss = inner.loss(x, y)
        inner.backward()
        return loss

    out = cores.run(work, [0, 1], 2)
    assert out[0] == pytest.approx(out[1], rel=1e-6)


def test_training_with_shards_follows_the_one_thread_run():
    cfg = ModelConfig.preset("toy")
    one, many = _pair(cfg, 2)
    o1 = AdamW(one.params, lr=1e-2)
    o2 = AdamW(many.params, lr=1e-2)
    for step in range(4):
        x, y = _batch(cfg, 6, seed=step)
        l1, l2 = one.loss(x, y), many.loss(x, y)
        assert l2 == pytest.approx(l1, rel=1e-11)
        o1.step(o1.gather(one.backward()))
        o2.step(o2.gather(many.backward()))


def test_adamw_split_over_the_cores_updates_exactly_as_one_call(monkeypatch):
    from minitransformer.training import optimizer
    monkeypatch.setattr(optimizer, "PARALLEL_UPDATE", 10)  # split even the toy model's buffer
    monkeypatch.setattr(cores, "available", lambda: 3)
    model = GPT("toy", seed=0)
    opt = AdamW(model.params, lr=1e-2, weight_decay=0.1)
    assert opt.n_decay < opt.buffer.size  # the decayed/undecayed edge falls inside a slice
    p, m, v = opt.buffer.copy(), opt.m.copy(), opt.v.copy()
    grad = np.random.default_rng(0).normal(size=opt.buffer.shape).astype(opt.buffer.dtype)
    for t in (1, 2):
        opt.step(grad)
        optimizer.adamw_update(p, grad, m, v, t, 1e-2, opt.betas, opt.eps, 0.1, opt.n_decay)
        np.testing.assert_array_equal(opt.buffer, p)
        np.testing.assert_array_equal(opt.m, m)
        np.testing.assert_array_equal(opt.v, v)



def test_modes_belong_to_their_thread_and_reach_the_shards():
    import threading

    from minitransformer.core import nn

    entered, left = threading.Event(), threading.Event()
    seen = {}

    def other():  # enters lean_caches first and leaves it while the main thread is still inside its own
        with nn.lean_caches():
            entered.set()
            left.wait(5)
        seen["other after"] = nn.lean()

    t = threading.Thread(target=other)
    t.start()
    entered.wait(5)
    with nn.lean_caches():
        left.set()
        t.join(5)
        seen["main inside"] = nn.lean()  # with one global flag, the other thread's exit switched it off here
    seen["main after"] = nn.lean()  # ... and the main thread's exit would have left it on for good
    assert seen == {"other after": False, "main inside": True, "main after": False}

    model = GPT("toy", threads=2)  # the shard threads see the caller's lean mode: their caches drop the pattern
    x = np.random.default_rng(0).integers(0, 64, (4, 16))
    model.loss(x, x)
    assert len(model._last) == 2
    assert all("hook_pattern" not in cache["blocks"][0]["attn"] for cache, _, _ in model._last)
    _, full = model.run_forward(x[:2], need_cache=True)
    assert "hook_pattern" in full["blocks"][0]["attn"] and not nn.lean()
