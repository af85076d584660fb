"""The command line's promises: one-line errors, documented exit codes (2 wrong input, 1 failed while
running, 130 interrupted, 143 terminated), Ctrl-C and SIGTERM that save, resume semantics, and the
tokenizer check; bad input refused before anything is written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minitransformer
from minitransformer.cli import main
from minitransformer.training import read_metadata

ROOT = Path(__file__).resolve().parent.parent
TOY = ["--preset", "toy", "--corpus", "tiny", "--batch-size", "4"]


def _one_error_line(capsys, code, expected_code, words):
    err = capsys.readouterr().err
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and words in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished toy run (20 steps): the preset's 64 ids are too few for a tokenizer, so it picks 300."""
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TOY, "--steps", "20", "--out", str(out)]) == 0
    return out


def test_toy_preset_trains_with_a_vocabulary_that_fits(run, capsys):
    meta = read_metadata(run / "model.npz")
    assert meta["model_config"]["vocab_size"] == 300 and meta["model_config"]["d_model"] == 32
    assert meta["extra"] == {"preset": "toy", "corpus": "tiny"} and len(meta["tokenizer_sha256"]) == 64
    assert main(["train", "--preset", "toy", "--vocab-size", "100", "--out", str(run / "x")]) == 2
    assert "--vocab-size 100 is too small" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"minitransformer {minitransformer.__version__}"


def test_bad_files_and_folders_are_one_line(tmp_path, capsys, run):
    bad = tmp_path / "bad.npz"
    bad.write_bytes((run / "model.npz").read_bytes()[:5000])  # truncated
    code = main(["generate", "--checkpoint", str(bad), "--tokenizer", str(run / "tokenizer.json")])
    _one_error_line(capsys, code, 2, f"{bad} is not a usable checkpoint: the file is damaged")
    code = main(["generate", "--checkpoint", str(run / "model.npz"), "--tokenizer", str(run)])
    _one_error_line(capsys, code, 2, f"--tokenizer {run} is a folder")
    a_file = tmp_path / "figs.png"
    a_file.write_bytes(b"x")
    _one_error_line(capsys, main(["trace", "hi", "--figures", str(a_file)]), 2, f"--figures {a_file} is a file")
    code = main(["trace", "hi", "--figures", str(a_file / "sub")])  # cannot be created
    _one_error_line(capsys, code, 1, f"--figures: cannot create the folder {a_file / 'sub'}")
    _one_error_line(capsys, main(["trace", ""]), 2, "the text to trace is empty")
    _one_error_line(capsys, main(["demo", "--prompt", "", "--figures", str(tmp_path / "f")]), 2, "--prompt is empty")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ValueError, match="is missing"):
        main(["generate", "--checkpoint", str(tmp_path / "no.npz"), "--debug"])


def test_an_unexpected_error_is_exit_1_with_a_hint(monkeypatch, capsys):
    import minitransformer.cli as cli

    def broken(args):
        raise TypeError("a bug")

    monkeypatch.setattr(cli, "load_course_model", lambda: broken(None))
    _one_error_line(capsys, main(["trace", "hi"]), 1, "unexpected TypeError: a bug (run again with --debug")


def test_generate_refuses_another_tokenizer(tmp_path, run, capsys):
    other = tmp_path / "other"
    assert main(["tokenizer", "train", "--corpus", "multilingual", "--vocab-size", "299", "--special",
                 "<|endoftext|>", "--out", str(other), "--quiet"]) == 0  # 300 ids, like the run's
    capsys.readouterr()
    code = main(["generate", "--checkpoint", str(run / "model.npz"), "--tokenizer", str(other)])
    _one_error_line(capsys, code, 2, "the tokenizer is not the one")


def test_resume_trains_longer_and_refuses_what_cannot_change(tmp_path, run, capsys):
    out = tmp_path / "r"
    assert main(["train", *TOY, "--steps", "8", "--out", str(out)]) == 0
    capsys.readouterr()
    _one_error_line(capsys, main(["train", *TOY, "--steps", "8", "--out", str(out)]), 2,
                    "already holds a run (model.npz); continue it with --resume")
    _one_error_line(capsys, main(["train", "--out", str(tmp_path / "none"), "--resume"]), 2,
                    "there is no checkpoint")
    for option, value in (("--preset", "tiny"), ("--batch-size", "8"), ("--seed", "3"), ("--corpus", "pydoc")):
        code = main(["train", "--out", str(out), "--resume", option, value])
        _one_error_line(capsys, code, 2, f"{option} {value} differs from the run")
    (out / "tokenizer.json").write_bytes(b"")  # an emptied tokenizer file
    assert main(["train", "--out", str(out), "--resume", "--steps", "12"]) == 2
    capsys.readouterr()
    (out / "tokenizer.json").write_bytes((run / "tokenizer.json").read_bytes())
    assert main(["train", "--out", str(out), "--resume", "--steps", "12", "--lr", "1e-3"]) == 0
    assert "resumed at step 8; training to step 12" in capsys.readouterr().out
    meta = read_metadata(out / "model.npz")
    assert meta["state"]["step"] == 12 and meta["train_config"]["lr"] == 1e-3 and meta["extra"]["preset"] == "toy"
    _one_error_line(capsys, main(["train", "--out", str(out), "--resume", "--steps", "10"]), 2,
                    "steps=10 is below the step")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_divergence_says_where_the_good_checkpoint_is(tmp_path, capsys):
    out = tmp_path / "d"
    code = main(["train", *TOY, "--steps", "60", "--lr", "1e4", "--checkpoint-every", "1", "--out", str(out)])
    err = _one_error_line(capsys, code, 1, "training diverged at step")
    assert f"the last good checkpoint is {out / 'model.npz'}" in err
    assert f"minitransformer train --out {out} --resume --lr 1000" in err
    meta = read_metadata(out / "model.npz")  # whole, and what training can go on from
    assert 0 < meta["state"]["step"] < 60 and all(np.isfinite(l) for _, l in meta["state"]["losses"])


@pytest.mark.parametrize("sig, code, said", [(signal.SIGINT, 130, ""), (signal.SIGTERM, 143, " by SIGTERM")])
def test_ctrl_c_or_sigterm_saves_a_checkpoint(tmp_path, sig, code, said):
    # SIGTERM is what `kill`, `timeout` and job schedulers send: it saves, as Ctrl-C does
    out = tmp_path / "c"
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "minitransformer", "train", *TOY, "--steps", "100000",
                             "--checkpoint-every", "5", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        t0 = time.monotonic()
        while not (out / "model.npz").exists():  # the first checkpoint: the run is in its training loop
            assert time.monotonic() - t0 < 60 and proc.poll() is None, "no checkpoint was written"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and f"the checkpoint {out / 'model.npz'} holds it" in stderr
    assert f"minitransformer train --out {out} --resume" in stderr
    step = read_metadata(out / "model.npz")["state"]["step"]
    # the file appears as step 5's save ends: a signal right then stops the run after that same step
    assert 5 <= step < 100000 and f"interrupted{said} at step {step};" in stderr


@pytest.mark.parametrize("option, value", [
    ("--steps", "-5"), ("--steps", "0"), ("--batch-size", "0"), ("--lr", "0"), ("--lr", "-1"), ("--lr", "nan"),
    ("--seed", "-1"), ("--eval-every", "-1"), ("--checkpoint-every", "-2"), ("--stop-at", "0"), ("--steps", "2.5"),
])
def test_bad_numbers_are_refused_before_anything_is_written(tmp_path, capsys, option, value):
    out = tmp_path / "n"
    with pytest.raises(SystemExit) as exit_:
        main(["train", *TOY, option, value, "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"argument {option}: " in err and "Traceback" not in err, err
    assert not out.exists()  # no folder, no tokenizer: nothing to clean up


def test_a_run_is_checked_before_its_folder_is_made(tmp_path, run, capsys):
    none = tmp_path / "none"
    _one_error_line(capsys, main(["train", "--out", str(none), "--resume"]), 2, "there is no checkpoint")
    assert not none.exists()
    out = tmp_path / "e"
    _one_error_line(capsys, main(["train", *TOY, "--steps", "2", "--out", str(out), "--export", str(out)]), 2,
                    "the weights-only export would replace the checkpoint that --resume continues from")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _one_error_line(capsys, main(["train", *TOY, "--steps", "2", "--out", str(out), "--export", str(a_file)]), 2,
                    f"--export {a_file} is a file, not a folder")
    assert not out.exists()  # refused before training, not after it


def test_stop_at_says_so_and_the_final_loss_is_measured_at_the_last_step(tmp_path, capsys):
    from minitransformer.training import resume
    from minitransformer.training.data import corpus_tokens

    out = tmp_path / "s"
    assert main(["train", *TOY, "--steps", "12", "--eval-every", "4", "--stop-at", "6", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"stopped at step 6 of 12 (--stop-at); continue with:\n  minitransformer train --out {out} --resume" in said
    meta = read_metadata(out / "model.npz")
    assert meta["state"]["step"] == 6 and meta["state"]["evals"][-1][0] == 4  # the last evaluation was at step 4
    tokens = corpus_tokens("tiny", 300, 16, tokenizer=minitransformer.Tokenizer.load(out / "tokenizer.json"))
    fresh = resume(out / "model.npz", tokens.train, tokens.val, log=None).evaluate()
    assert f"validation loss {fresh:.3f} nats/token" in said  # evaluated at step 6, not step 4's figure
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert "stopped at step" not in capsys.readouterr().out and read_metadata(out / "model.npz")["state"]["step"] == 12


def test_the_recorded_value_is_named_even_when_it_is_zero(run, capsys):
    code = main(["train", "--out", str(run), "--resume", "--seed", "3"])
    _one_error_line(capsys, code, 2, f"--seed 3 differs from the run in {run} (0);")


def test_demo_train_replaces_only_its_own_model(tmp_path, run, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    code = main(["demo", "--train", "--steps", "2", "--corpus", "tiny", "--out", str(run), "--figures",
                 str(tmp_path / "f"), "--max-new-tokens", "2"])
    _one_error_line(capsys, code, 2, "holds a model that demo --train did not make (model.npz)")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # the training run is untouched
    assert not (tmp_path / "f").exists()  # refused before the trace wrote its figures


def test_more_mistakes_named(tmp_path, run, capsys):
    tok = str(run / "tokenizer.json")
    _one_error_line(capsys, main(["trace", "hi", "--tokenizer", tok]), 2, "--tokenizer needs --checkpoint")
    code = main(["tokenizer", "encode", "--tokenizer", tok, "a <|endoftext|>"])
    _one_error_line(capsys, code, 2, "the text contains the special token '<|endoftext|>'; add --allow-special")
    assert main(["tokenizer", "encode", "--tokenizer", tok, "--allow-special", "<|endoftext|>"]) == 0
    assert capsys.readouterr().out.split() == [str(minitransformer.Tokenizer.load(tok).special_tokens["<|endoftext|>"])]
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait ".encode("latin-1") * 50)
    code = main(["tokenizer", "train", "--file", str(latin1), "--vocab-size", "260", "--out", str(tmp_path / "t.json")])
    _one_error_line(capsys, code, 2, f"--file {latin1} is not UTF-8 text (byte 3: invalid continuation byte)")
    code = main(["tokenizer", "train", "--corpus", "tiny", "--vocab-size", "260", "--out", str(tmp_path), "--quiet"])
    _one_error_line(capsys, code, 2, f"--out {tmp_path} is a folder; give the path of the tokenizer's .json file")
    with pytest.raises(SystemExit):
        main(["generate", "--seed", "-1"])
    assert "argument --seed: -1 is below 0" in capsys.readouterr().err
