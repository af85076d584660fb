"""Data-parallel training: N ranks compute what one process computes, and fail cleanly when a rank dies.

The multi-process tests launch real ranks (torchrun, gloo on CPU) and compare their
checkpoint with a single process's on the same global batch: to 1e-10 in float64,
to rounding in float32, with and without ZeRO-1. The pieces that need no process
group (the sharded optimizer, the bucket layout, backward's ``on_grads`` order) are
tested in numpy alone.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minitransformer.cli import main
from minitransformer.core.config import ModelConfig
from minitransformer.core.tree import flatten
from minitransformer.model import GPT
from minitransformer.training import TrainConfig, read_metadata
from minitransformer.training.checkpoint import read_checkpoint
from minitransformer.training.distributed import (DistContext, DistributedTrainer, GradBuckets, ShardedAdamW,
                                                  backward_order)
from minitransformer.training.optimizer import AdamW

ROOT = Path(__file__).resolve().parents[1]
RUN = ["--preset", "toy", "--corpus", "tiny", "--vocab-size", "300", "--steps", "6", "--batch-size", "8"]


def _env(**extra) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _torchrun(args, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "minitransformer", "train", *args]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def _arrays(folder):
    return read_checkpoint(Path(folder) / "model.npz")[1]


# --------------------------------------------------------------------------- N ranks == one process
@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
@pytest.mark.parametrize("dtype,zero1,tol", [("float64", False, 1e-10), ("float64", True, 1e-10),
                                             ("float32", False, 1e-5), ("float32", True, 1e-5)])
def test_two_ranks_train_the_parameters_one_process_trains(tmp_path, capsys, dtype, zero1, tol):
    pytest.importorskip("torch", reason="data-parallel training communicates through torch.distributed")
    assert main(["train", *RUN, "--dtype", dtype, "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    two = ["--dtype", dtype, "--out", str(tmp_path / "two")] + (["--zero1"] if zero1 else [])
    if zero1:  # also stop half-way and resume: ZeRO-1's sharded moments go through one checkpoint
        _torchrun(RUN + two + ["--stop-at", "3"])
        assert read_metadata(tmp_path / "two" / "model.npz")["state"]["step"] == 3
        log = _torchrun(RUN + two + ["--resume"])
        assert "resumed at step 3" in log and "ZeRO-1 saves" in log
    elif dtype == "float64":  # many small buckets; stop under 2 ranks and continue in one process
        _torchrun(RUN + two + ["--bucket-mb", "0.01", "--stop-at", "3"])
        assert main(["train", "--out", str(tmp_path / "two"), "--resume"]) == 0
        log = capsys.readouterr().out
        assert "resumed at step 3" in log
    else:
        log = _torchrun(RUN + two)
    assert log.count("validation loss") == 1  # only rank 0 speaks
    one, two = _arrays(tmp_path / "one"), _arrays(tmp_path / "two")
    assert sorted(one) == sorted(two)
    assert one["params.embed.W_E"].dtype == np.dtype(dtype)
    moved = max(float(np.abs(one[k] - GPT_init(k)).max()) for k in one if k.startswith("params."))
    assert moved > 1e-3  # the parameters did change over the steps
    diff = max(float(np.abs(one[k].astype(np.float64) - two[k]).max()) for k in one)
    assert diff <= tol, f"max |diff| {diff:.3g} between 1 and 2 ranks ({dtype}, zero1={zero1})"
    print(f"max |diff| 1 vs 2 ranks, {dtype}, zero1={zero1}: {diff:.3g}")


def GPT_init(key):
    """The initial value of a parameter of the test runs' model (to check that training moved it)."""
    config = ModelConfig.preset("toy", vocab_size=300)
    return flatten(GPT(config, seed=0).params)[key[len("params."):]]


MOE_SCRIPT = """
import sys
import numpy as np
from minitransformer.core.config import ModelConfig
from minitransformer.core.tree import flatten, to_float64
from minitransformer.model import GPT
from minitransformer.training import TrainConfig
from minitransformer.training.distributed import DistributedTrainer, init_from_env, shutdown

cfg = ModelConfig.preset("toy", ffn="moe", n_experts=8, experts_per_token=2, d_expert=8, balance_speed=0.01)
model = GPT(cfg, seed=0)
model.params = to_float64(model.params)
tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, 4000)
ctx = init_from_env()
trainer = DistributedTrainer(model, tokens, config=TrainConfig(steps=4, batch_size=8, eval_every=0, warmup=1), ctx=ctx,
                             log=None)
trainer.run()
if ctx.rank == 0:
    np.savez(sys.argv[1], **flatten(model.params))
shutdown()
"""


@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
def test_two_ranks_balance_a_mixture_of_experts_as_one_process_does(tmp_path):
    # the router biases move by the whole batch's expert loads: each rank's counts are summed first
    pytest.importorskip("torch", reason="data-parallel training communicates through torch.distributed")
    from minitransformer.core.tree import to_float64
    from minitransformer.training import Trainer

    script = tmp_path / "moe_ranks.py"
    script.write_text(MOE_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(script),
           str(tmp_path / "two.npz")]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    two = np.load(tmp_path / "two.npz")
    cfg = ModelConfig.preset("toy", ffn="moe", n_experts=8, experts_per_token=2, d_expert=8, balance_speed=0.01)
    model = GPT(cfg, seed=0)
    model.params = to_float64(model.params)
    tokens = np.random.default_rng(1).integers(0, cfg.vocab_size, 4000)
    Trainer(model, tokens, config=TrainConfig(steps=4, batch_size=8, eval_every=0, warmup=1), log=None).run()
    one = flatten(model.params)
    assert sorted(one) == sorted(two.files)
    biases = [k for k in one if k.endswith("b_router")]
    assert biases and max(float(np.abs(one[k]).max()) for k in biases) > 0  # the balancing did move them
    for k in one:
        np.testing.assert_allclose(two[k], one[k], rtol=0, atol=1e-10, err_msg=k)


# --------------------------------------------------------------------------- faults
def _two_ranks(args, out):
    """Two ranks started by hand (no torchrun), so that a test can signal or kill one of them alone;
    returned once rank 0 wrote its first checkpoint in ``out`` (both are in the training loop). A free
    port that another process takes before rank 0 binds it is chosen again."""
    for _ in range(3):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        procs = [subprocess.Popen([sys.executable, "-m", "minitransformer", "train", *args], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=_env(RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2",
                                           MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)))
                 for r in range(2)]
        t0 = time.monotonic()
        while not (out / "model.npz").exists():
            if time.monotonic() - t0 > 60 or any(p.poll() is not None for p in procs):
                break
            time.sleep(0.1)
        else:
            return procs
        for p in procs:
            if p.poll() is None:
                p.kill()
        errs = [p.communicate()[1] for p in procs]
        assert "already in use" in "".join(errs), "no checkpoint: " + errs[0][-1500:] + errs[1][-1500:]
    raise AssertionError("three free ports were taken before rank 0 could bind them")


@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
def test_a_killed_rank_makes_the_other_exit_with_a_clear_error(tmp_path):
    pytest.importorskip("torch", reason="data-parallel training communicates through torch.distributed")
    out = tmp_path / "run"
    procs = _two_ranks([*RUN[:6], "--steps", "100000", "--batch-size", "8", "--checkpoint-every", "5",
                        "--dist-timeout", "20", "--out", str(out)], out)
    try:
        time.sleep(0.3)  # mid-run, between checkpoints
        procs[1].send_signal(signal.SIGKILL)
        killed = time.monotonic()
        _, err = procs[0].communicate(timeout=40)
        waited = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert procs[0].returncode != 0
    assert waited < 25, f"rank 0 took {waited:.1f} s to notice"
    assert "rank 0 of 2" in err and "--resume" in err, err[-2000:]
    meta, arrays = read_checkpoint(out / "model.npz")  # intact: it loads, and is one consistent unit
    assert meta["state"]["step"] % 5 == 0 and meta["state"]["step"] > 0
    assert arrays["opt.m"].size == sum(a.size for k, a in arrays.items() if k.startswith("params."))


@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
@pytest.mark.parametrize("zero1", [False, True])
def test_ctrl_c_seen_by_one_rank_alone_stops_every_rank_after_the_same_step(tmp_path, zero1):
    # each rank sees Ctrl-C at its own moment; a rank that stopped alone would leave its peer waiting in
    # the next all-reduce, and rank 0 would never save. Here the other rank never sees a signal at all.
    pytest.importorskip("torch", reason="data-parallel training communicates through torch.distributed")
    out = tmp_path / "run"
    args = [*RUN[:6], "--steps", "100000", "--batch-size", "8", "--checkpoint-every", "5", "--dist-timeout", "20",
            "--out", str(out)] + (["--zero1"] if zero1 else [])
    procs = _two_ranks(args, out)  # after the first checkpoint: both ranks are in the loop
    try:
        procs[1].send_signal(signal.SIGINT)
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    errs = [err for _, err in results]
    assert [p.returncode for p in procs] == [130, 130], errs[0][-1500:] + errs[1][-1500:]
    step = read_metadata(out / "model.npz")["state"]["step"]
    assert step > 5 and f"interrupted at step {step}; the checkpoint {out / 'model.npz'} holds it" in errs[0]
    assert "PeerLost" not in errs[0] + errs[1] and "failed at step" not in errs[0] + errs[1]


@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
@pytest.mark.parametrize("to", ["launcher", "group"])  # group: a terminal's Ctrl-C reaches every process in it
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_launcher_stops_every_rank_with_a_checkpoint(tmp_path, sig, code, to):
    pytest.importorskip("torch", reason="data-parallel training communicates through torch.distributed")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "minitransformer", "train", *RUN[:6], "--steps", "100000", "--batch-size", "8",
           "--checkpoint-every", "5", "--nproc", "2", "--out", str(out)]
    log, errors = tmp_path / "out.txt", tmp_path / "err.txt"  # files, not pipes: a full pipe would stall the ranks
    with open(log, "w") as stdout, open(errors, "w") as stderr:
        proc = subprocess.Popen(cmd, env=_env(PYTHONUNBUFFERED="1"), stdout=stdout, stderr=stderr,
                                start_new_session=True)  # a group of its own, as a terminal gives a command
    try:
        t0 = time.monotonic()
        while not (out / "model.npz").exists():  # the first checkpoint: every rank is in the training loop
            assert time.monotonic() - t0 < 60 and proc.poll() is None, errors.read_text()[-2000:]
            time.sleep(0.1)
        proc.send_signal(sig) if to == "launcher" else os.killpg(proc.pid, sig)
        proc.wait(timeout=90)
        ranks = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout.split()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = errors.read_text()
    assert proc.returncode == code, err[-2000:]
    assert ranks == [], "ranks were left running"
    step = read_metadata(out / "model.npz")["state"]["step"]
    assert step > 5 and f"interrupted at step {step}; the checkpoint {out / 'model.npz'} holds it" in err
    assert err.count("interrupted at step") == 1 and "nothing was saved" not in err  # rank 0 alone says it
    assert "Traceback" not in err, err[-2000:]  # torchrun's stop, too, ends without one


@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_divergence_under_two_ranks_says_where_the_good_checkpoint_is_once(tmp_path):
    pytest.importorskip("torch", reason="data-parallel training communicates through torch.distributed")
    out = tmp_path / "d"
    done = subprocess.run([sys.executable, "-m", "minitransformer", "train", *RUN[:6], "--steps", "60",
                           "--batch-size", "8", "--lr", "1e4", "--checkpoint-every", "1", "--nproc", "2",
                           "--out", str(out)], env=_env(), capture_output=True, text=True, timeout=180)
    err = done.stderr
    assert done.returncode == 1, err[-2000:]
    assert err.count("training diverged at step") == 1 and f"the last good checkpoint is {out / 'model.npz'}" in err
    assert f"minitransformer train --out {out} --resume --lr 1000" in err and "FloatingPointError" not in err
    meta = read_metadata(out / "model.npz")  # whole, and what training can go on from
    assert 0 < meta["state"]["step"] < 60 and all(np.isfinite(l) for _, l in meta["state"]["losses"])


@pytest.mark.slow  # a process that imports torch
def test_a_port_in_use_is_named_with_the_fix(tmp_path):
    pytest.importorskip("torch", reason="data-parallel training communicates through torch.distributed")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "minitransformer", "train", *RUN, "--dist-timeout", "10",
                               "--out", str(tmp_path / "p")], capture_output=True, text=True, timeout=120,
                              env=_env(RANK="0", LOCAL_RANK="0", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                                       MASTER_PORT=str(port)))
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: port {port} is already in use on this machine: give torchrun another --master-port" in done.stderr
    assert "unexpected" not in done.stderr and not (tmp_path / "p").exists()  # refused before anything is written


def test_a_batch_that_does_not_split_is_refused_before_launching(tmp_path, capsys):
    pytest.importorskip("torch", reason="data-parallel training communicates through torch.distributed")
    code = main(["train", *RUN[:6], "--batch-size", "3", "--nproc", "2", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "the batch of 3 rows does not split over 2 ranks: use --nproc 1 or 3" in err, err
    assert not (tmp_path / "x").exists()  # no tokenizer trained, no folder: nothing launched


# --------------------------------------------------------------------------- the pieces, in numpy alone
def _model(seed=0):
    return GPT(ModelConfig.preset("toy"), seed=seed)


def test_sharded_adamw_slices_together_make_the_full_update():
    rng = np.random.default_rng(0)
    full_model = _model()
    full = AdamW(full_model.params, lr=1e-2, weight_decay=0.1)
    shards = [ShardedAdamW(_model().params, r, 3, lr=1e-2, weight_decay=0.1) for r in range(3)]
    n = full.buffer.size
    for t in range(4):
        g = rng.standard_normal(n).astype(np.float32)
        full.step(g)
        for s in shards:
            s.step(g[s.lo:s.hi])
    joined = np.concatenate([s.buffer[s.lo:s.hi] for s in shards])
    np.testing.assert_array_equal(joined, full.buffer)  # elementwise maths: bit for bit
    np.testing.assert_array_equal(np.concatenate([s.m for s in shards]), full.m)
    assert shards[0].m.nbytes == -(-n // 3) * 4 and shards[0].m.nbytes * 3 >= full.m.nbytes
    assert shards[0].n_decay == full.n_decay > shards[0].hi  # the first slice is all decayed matrices


def test_backward_reports_gradients_in_the_order_of_the_bucket_layout():
    model = _model()
    ids = np.random.default_rng(1).integers(0, 64, (2, 9))
    model.loss(ids[:, :-1], ids[:, 1:])
    calls = []
    grads = model.backward(on_grads=lambda prefix, g: calls.append((prefix, list(flatten(g, prefix + ".")))))
    assert [p for p, _ in calls] == ["unembed", "ln_final", "blocks.1", "blocks.0", "pos", "embed"]
    order, pos = backward_order(model), 0
    for _, names in calls:  # each call fills the next run of the buffer (the order inside a part is free)
        assert set(names) == set(order[pos:pos + len(names)])
        pos += len(names)
    assert pos == len(order)
    model.loss(ids[:, :-1], ids[:, 1:])
    plain = flatten(model.backward())
    for k, v in flatten(grads).items():
        np.testing.assert_array_equal(v, plain[k])


@pytest.mark.parametrize("bucket_bytes", [1, 4096, 10**9])
def test_buckets_cover_the_gradient_once_in_whole_parameters(bucket_bytes):
    model = _model()
    opt = AdamW(model.params)
    b = GradBuckets(opt, backward_order(model), bucket_bytes, scale=0.5)
    starts = [s.start for s in b.buckets]
    assert starts[0] == 0 and b.buckets[-1].stop == opt.buffer.size
    assert all(x.stop == y.start for x, y in zip(b.buckets, b.buckets[1:]))
    edges = {s.start for s in b.slices.values()}
    assert set(starts) <= edges  # no parameter is cut in two
    for s in b.buckets:  # a bucket only passes the limit when it is one parameter
        assert (s.stop - s.start) * 4 <= bucket_bytes or s.start in edges and sum(
            1 for x in b.slices.values() if s.start <= x.start < s.stop) == 1
    if bucket_bytes == 10**9:
        assert len(b.buckets) == 1


def test_a_batch_that_does_not_split_over_the_ranks_is_refused():
    with pytest.raises(ValueError, match="multiple of 3"):
        DistributedTrainer(_model(), np.arange(500) % 64, config=TrainConfig(steps=1, batch_size=8),
                           ctx=DistContext(rank=0, world_size=3))


def test_zero1_without_several_processes_is_refused(capsys, tmp_path):
    assert main(["train", *RUN, "--zero1", "--out", str(tmp_path)]) == 2
    assert "torchrun" in capsys.readouterr().err
