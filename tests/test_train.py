"""Training: AdamW against a plain per-array reference, schedule, clipping, accumulation, resume."""

import json
import math

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT, flatten
from minitransformer.training import (AdamW, TrainConfig, Trainer, clip_grad_norm, get_batch, load_model, lr_at,
                                      read_metadata, resume)
from minitransformer.training.loop import TrainingDiverged, TrainingInterrupted


def reference_adamw(params, grads, state, lr, b1=0.9, b2=0.95, eps=1e-8, wd=0.1):
    """Textbook AdamW, one array at a time (Loshchilov & Hutter, Algorithm 2)."""
    state["t"] = state.get("t", 0) + 1
    t = state["t"]
    for n, p in params.items():
        g = grads[n]
        m = state.setdefault(("m", n), np.zeros_like(p))
        v = state.setdefault(("v", n), np.zeros_like(p))
        m[:] = b1 * m + (1 - b1) * g
        v[:] = b2 * v + (1 - b2) * g * g
        mhat, vhat = m / (1 - b1**t), v / (1 - b2**t)
        if p.ndim >= 2:
            p *= 1 - lr * wd
        p -= lr * mhat / (np.sqrt(vhat) + eps)


def test_adamw_matches_the_textbook_update():
    rng = np.random.default_rng(0)
    tree = {"W": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "blocks": [{"g": rng.normal(size=2)}]}
    ref = {k: v.copy() for k, v in flatten(tree).items()}
    opt = AdamW(tree, lr=0.01)
    state = {}
    for step in range(5):
        grads = {k: rng.normal(size=v.shape) for k, v in ref.items()}
        nested = {"W": grads["W"], "b": grads["b"], "blocks": [{"g": grads["blocks.0.g"]}]}
        opt.step(opt.gather(nested).astype(np.float32), lr=0.01)
        reference_adamw(ref, grads, state, 0.01)
    for n, a in flatten(tree).items():
        assert np.allclose(a, ref[n], atol=1e-5), n
    assert opt.n_decay == 12  # only the matrix is decayed


def test_model_arrays_become_views_of_the_optimizer_buffer():
    m = GPT("toy", seed=0)
    before = {n: a.copy() for n, a in m.named_parameters().items()}
    opt = AdamW(m.params)
    for n, a in m.named_parameters().items():
        assert np.array_equal(a, before[n]) and np.shares_memory(a, opt.buffer)


def test_schedule_and_clipping():
    assert lr_at(0, 1.0, 10, 100) == pytest.approx(0.1)
    assert lr_at(9, 1.0, 10, 100) == 1.0
    assert lr_at(55, 1.0, 10, 100, min_lr=0.1) == pytest.approx(0.55)
    assert lr_at(100, 1.0, 10, 100, min_lr=0.1) == 0.1
    g = np.array([3.0, 4.0], np.float32)
    assert clip_grad_norm(g, 1.0) == pytest.approx(5.0) and np.linalg.norm(g) == pytest.approx(1.0, rel=1e-5)


def test_batches_are_windows_with_shifted_targets():
    tokens = np.arange(100)
    x, y = get_batch(tokens, 4, 8, np.random.default_rng(0))
    assert x.shape == y.shape == (4, 8) and np.array_equal(y, x + 1)
    with pytest.raises(ValueError, match="too few"):
        get_batch(np.arange(5), 1, 8, np.random.default_rng(0))


def test_gradient_accumulation_equals_one_big_batch():
    m = GPT("toy", seed=1)
    opt = AdamW(m.params)
    ids = np.random.default_rng(2).integers(0, 64, (4, 9))
    m.loss(ids[:, :-1], ids[:, 1:])
    full = opt.gather(m.backward())
    halves = []
    for part in (ids[:2], ids[2:]):
        m.loss(part[:, :-1], part[:, 1:])
        halves.append(opt.gather(m.backward()))
    assert np.allclose((halves[0] + halves[1]) / 2, full, atol=1e-6)


def periodic_tokens(n=4000, period=7):
    return np.tile(np.arange(period) * 3 % 64, n // period + 1)[:n]


def test_training_learns_a_periodic_sequence():
    m = GPT(ModelConfig.preset("toy"), seed=0)
    t = Trainer(m, periodic_tokens(), config=TrainConfig(steps=60, batch_size=8, lr=1e-2, warmup=5, eval_every=30), log=None)
    state = t.run()
    assert state.losses[0][1] > 3.5 and state.evals[-1][1] < 0.5  # from log(64) to nearly certain


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(steps=12, batch_size=4, lr=5e-3, warmup=2, eval_every=6, accum_steps=2)
    tokens = np.random.default_rng(0).integers(0, 64, 3000)
    whole = Trainer(GPT(ModelConfig.preset("toy", dropout=0.1), seed=0), tokens, config=cfg, log=None).run()

    first = Trainer(GPT(ModelConfig.preset("toy", dropout=0.1), seed=0), tokens, config=cfg, log=None)
    while first.state.step < 5:
        first.state.losses.append((first.state.step + 1, first.train_step()))
    from minitransformer.training import save_checkpoint

    save_checkpoint(tmp_path / "ckpt.npz", first)
    rest = resume(tmp_path / "ckpt.npz", tokens, log=None).run()
    assert [l for _, l in rest.losses[5:]] == [l for _, l in whole.losses[5:]]  # bit for bit
    assert np.array_equal(load_model(tmp_path / "ckpt.npz").named_parameters()["embed.W_E"],
                          first.model.named_parameters()["embed.W_E"])


def test_nan_guard_stops_with_a_clear_message():
    m = GPT("toy", seed=0)
    m.params["ln_final"]["w"][:] = np.nan
    t = Trainer(m, periodic_tokens(), config=TrainConfig(steps=3, batch_size=2, eval_every=0), log=None)
    with pytest.raises(FloatingPointError, match="training diverged at step 0: the loss became nan. Lower the "
                                                 "learning rate .*no checkpoint was written yet"):
        t.run()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("lr", [1e2, 1e4, 1e6])
def test_divergence_keeps_the_last_good_checkpoint(tmp_path, lr):
    # a huge learning rate, no clipping, a checkpoint after every step: the run must stop before
    # it writes weights that are not finite, or that are finite but give a non-finite loss
    tokens = periodic_tokens()
    cfg = TrainConfig(steps=40, batch_size=4, lr=lr, warmup=1, eval_every=0, checkpoint_every=1, grad_clip=0.0)
    t = Trainer(GPT("toy", seed=0), tokens, config=cfg, log=None)
    with pytest.raises(TrainingDiverged) as err:
        t.run(checkpoint_path=tmp_path / "c.npz")
    e = err.value
    assert e.checkpoint == tmp_path / "c.npz" and f"the last good checkpoint is {e.checkpoint}" in str(e)
    assert 0 < e.checkpoint_step <= e.step
    saved = resume(e.checkpoint, tokens, log=None, lr=1e-3)  # what the message advises
    assert saved.state.step == e.checkpoint_step and np.isfinite(saved.opt.buffer).all()
    assert np.isfinite(saved.model.loss(*get_batch(tokens, 4, 16, np.random.default_rng(0))))
    assert saved.config.lr == 1e-3 and math.isclose(saved.config.min_lr, cfg.min_lr * 1e-3 / lr)


def test_resume_applies_what_may_change_and_refuses_the_rest(tmp_path):
    tokens = periodic_tokens()
    cfg = TrainConfig(steps=6, batch_size=4, eval_every=3, warmup=2)
    Trainer(GPT("toy", seed=0), tokens, config=cfg, log=None).run(checkpoint_path=tmp_path / "c.npz")
    longer = resume(tmp_path / "c.npz", tokens, log=None, steps=10, eval_every=5)
    assert longer.state.step == 6 and longer.config.steps == 10 and longer.config.eval_every == 5
    state = longer.run(checkpoint_path=tmp_path / "c.npz")
    assert state.step == 10 and [s for s, _ in state.evals] == [3, 6, 10]
    assert read_metadata(tmp_path / "c.npz")["state"]["step"] == 10
    with pytest.raises(ValueError, match="steps=8 is below the step .* has reached \\(10\\); steps is the total"):
        resume(tmp_path / "c.npz", tokens, log=None, steps=8)
    with pytest.raises(ValueError, match="batch_size, seed cannot change when resuming"):
        resume(tmp_path / "c.npz", tokens, log=None, batch_size=8, seed=1)


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_in_a_training_loop_saves_and_raises(tmp_path, name):
    # the handler sets a flag; the step in progress finishes, the checkpoint is written, then it stops
    # (SIGTERM is what `kill` and job schedulers send)
    import os
    import signal

    sig = getattr(signal, name)

    class Interrupting(Trainer):
        def train_step(self):
            loss = super().train_step()
            if self.state.step == 3:
                os.kill(os.getpid(), sig)
            return loss

    before = signal.getsignal(sig)
    t = Interrupting(GPT("toy", seed=0), periodic_tokens(), config=TrainConfig(steps=50, batch_size=2, eval_every=0),
                     log=None)
    with pytest.raises(TrainingInterrupted) as err:
        t.run(checkpoint_path=tmp_path / "c.npz")
    assert err.value.step == 3 and err.value.checkpoint == tmp_path / "c.npz" and err.value.signal_name == name
    assert read_metadata(tmp_path / "c.npz")["state"]["step"] == 3
    assert signal.getsignal(sig) == before  # the handler is removed again


def test_a_stop_a_peer_asked_for_takes_this_process_own_signal_after_it_without_effect(tmp_path):
    # data parallel: rank 1 may stop because rank 0 saw Ctrl-C, and torchrun's SIGINT for rank 1 come
    # after rank 1 left the loop; it must not raise KeyboardInterrupt there. A second one acts as usual.
    import os
    import signal

    class PeerStops(Trainer):  # as a DistributedTrainer whose peer sent its stop flag with step 3's loss
        def stop_agreed(self, ctrl_c):
            return self.state.step >= 3

    before = signal.getsignal(signal.SIGINT)
    t = PeerStops(GPT("toy", seed=0), periodic_tokens(), config=TrainConfig(steps=50, batch_size=2, eval_every=0),
                  log=None)
    try:
        with pytest.raises(TrainingInterrupted) as err:
            t.run(checkpoint_path=tmp_path / "c.npz")
        assert err.value.step == 3 and err.value.signal_name == "SIGINT"
        assert read_metadata(tmp_path / "c.npz")["state"]["step"] == 3
        os.kill(os.getpid(), signal.SIGINT)  # this process's own signal, late: taken without effect
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # a second one: as without the handler
        assert signal.getsignal(signal.SIGINT) == before
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_checkpoint_with_damaged_training_settings_is_named(tmp_path, monkeypatch):
    from minitransformer.training import loop

    t = Trainer(GPT("toy"), periodic_tokens(), config=TrainConfig(steps=2, batch_size=2, eval_every=0), log=None)
    t.run(checkpoint_path=tmp_path / "c.npz")
    real = loop.read_checkpoint
    for damage, words in ((lambda m: m["train_config"].update(foo=1), "unknown training settings 'foo'"),
                          (lambda m: m.update(state="x"), "TypeError"),
                          (lambda m: m["train_config"].update(seed=-1), "seed=-1 must be an int >= 0")):
        def damaged(path, damage=damage):
            meta, arrays = real(path)
            damage(meta)
            return meta, arrays

        monkeypatch.setattr(loop, "read_checkpoint", damaged)
        with pytest.raises(ValueError, match=f"c.npz is not a usable checkpoint: its training settings are damaged "
                                             f"\\(.*{words}"):
            resume(tmp_path / "c.npz", periodic_tokens(), log=None)
    monkeypatch.setattr(loop, "read_checkpoint", real)
    with pytest.raises(ValueError, match="lr=-1 must be > 0"):  # a bad change is the caller's, not the file's
        resume(tmp_path / "c.npz", periodic_tokens(), log=None, lr=-1)


def test_checkpoint_is_one_file_and_is_validated(tmp_path):
    t = Trainer(GPT("toy"), periodic_tokens(), config=TrainConfig(steps=1, batch_size=2, eval_every=0), log=None)
    t.run(checkpoint_path=tmp_path / "c.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # arrays and metadata in one file
    meta = read_metadata(tmp_path / "c.npz")
    assert meta["format"] == "minitransformer-checkpoint" and meta["version"] == 2 and meta["state"]["step"] == 1
    with pytest.raises(ValueError, match="missing"):
        load_model(tmp_path / "nothing.npz")


def test_train_config_validation():
    with pytest.raises(ValueError, match="steps=0 must be a positive int"):
        TrainConfig(steps=0)
    for name in ("eval_every", "checkpoint_every", "warmup", "seed"):  # 0 is allowed: never, no warmup
        assert getattr(TrainConfig(**{name: 0}), name) == 0
        with pytest.raises(ValueError, match=f"{name}=-1 must be an int >= 0"):
            TrainConfig(**{name: -1})
    assert math.isclose(TrainConfig().lr, 3e-3)


def test_progress_bar_or_log_lines(capsys):
    lines = []
    t = Trainer(GPT("toy"), periodic_tokens(), config=TrainConfig(steps=4, batch_size=2, eval_every=2), log=lines.append)
    state = t.run(progress=True)  # tqdm if installed, otherwise the log lines
    assert state.step == 4 and len(state.evals) == 2
    assert lines or "step" in capsys.readouterr().err


def test_on_eval_sees_every_evaluation():
    seen = []
    t = Trainer(GPT("toy"), periodic_tokens(), config=TrainConfig(steps=6, batch_size=2, eval_every=3), log=None)
    state = t.run(on_eval=lambda trainer, step, loss: seen.append((step, loss, trainer.state.step)))
    assert [(s, l) for s, l, _ in seen] == state.evals and [s for s, _, n in seen] == [n for _, _, n in seen] == [3, 6]
