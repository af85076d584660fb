import subprocess
import sys

import pytest

from minitransformer import Tokenizer
from minitransformer.cli import main
from minitransformer.training import read_metadata
from minitransformer.training.checkpoint import check_tokenizer


def test_demo_traces_the_course_model_through_the_five_stages(tmp_path, capsys):
    figs = tmp_path / "figs"
    assert main(["demo", "--color", "never", "--figures", str(figs), "--max-new-tokens", "10"]) == 0
    out = capsys.readouterr().out
    for concept in ("distinction", "classification", "indexing", "retrieval", "processing"):
        assert f"-> {concept} ==" in out
    assert "validation loss" in out and "temperature 0.5" in out and "a continuation" in out
    names = sorted(p.name for p in figs.iterdir())
    assert names[0] == "01_tokenization.png" and names[-1].endswith("_feedforward.png")
    assert f"{len(names)} figures written to" in out


@pytest.mark.slow  # a fresh interpreter; tests/test_install.py runs the installed wheel's command too
def test_demo_runs_as_the_installed_command(tmp_path):
    # the README's first set-up command runs `minitransformer demo`; the module form is the same entry point
    result = subprocess.run(
        [sys.executable, "-m", "minitransformer", "demo", "--color", "never", "--figures", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "== step 1: stage 1, BPE tokenization -> distinction ==" in result.stdout


@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")  # the multilingual corpus's tokens, drawn
def test_demo_can_train_a_fresh_model_and_keeps_it(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["demo", "--train", "--steps", "4", "--corpus", "tiny", "--figures", str(tmp_path / "f"),
                 "--out", str(run), "--max-new-tokens", "3", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "Training a fresh tokenizer" in out and f"kept the trained model in {run}/" in out
    assert sorted(p.name for p in run.iterdir()) == ["model.npz", "tokenizer.json"]
    assert read_metadata(run / "model.npz")["extra"]["made_by"] == "demo"  # a later demo --train may replace it
    # what it kept is a run that `train --resume` continues, and `generate` reads
    assert main(["train", "--out", str(run), "--resume", "--steps", "6", "--batch-size", "16"]) == 0
    assert "resumed at step 4; training to step 6" in capsys.readouterr().out
    assert main(["generate", "--checkpoint", str(run / "model.npz"), "--tokenizer", str(run / "tokenizer.json"),
                 "--prompt", "", "--max-new-tokens", "3"]) == 0
    # a second demo --train replaces its own model (on another corpus: a new tokenizer beside a new model)
    assert main(["demo", "--train", "--steps", "2", "--corpus", "multilingual", "--figures", str(tmp_path / "f"),
                 "--out", str(run), "--max-new-tokens", "3", "--color", "never"]) == 0
    meta = read_metadata(run / "model.npz")
    assert meta["state"]["step"] == 2 and meta["extra"]["corpus"] == "multilingual"
    check_tokenizer(meta, Tokenizer.load(run / "tokenizer.json"), run / "model.npz")  # the pair belongs together


def test_trace_command_and_missing_files(tmp_path, capsys):
    assert main(["trace", "def f(x):", "--figures", str(tmp_path / "t")]) == 0
    assert "stage 4, attention -> retrieval" in capsys.readouterr().out
    assert main(["trace", "x", "--checkpoint", str(tmp_path / "none.npz"), "--tokenizer", str(tmp_path / "none.json")]) == 2
    assert f"--checkpoint {tmp_path / 'none.npz'} is missing" in capsys.readouterr().err


def test_tokenizer_train_and_encode_commands(tmp_path, capsys):
    out = tmp_path / "tok.json"
    listing = tmp_path / "tok.vocab"
    code = main(["tokenizer", "train", "--corpus", "tiny", "--vocab-size", "300", "--out", str(out),
                 "--vocab-listing", str(listing), "--special", "<|endoftext|>", "--quiet"])
    assert code == 0 and out.exists() and listing.exists()
    capsys.readouterr()
    assert main(["tokenizer", "encode", "--tokenizer", str(out), "--allow-special", "hi<|endoftext|>"]) == 0
    assert capsys.readouterr().out.split()[-1] == "300"


def test_bad_input_is_one_clear_line_and_exit_code_2(tmp_path, capsys):
    code = main(["tokenizer", "train", "--corpus", "tiny", "--vocab-size", "10", "--out", str(tmp_path / "t.json")])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: vocab_size must be an int >= 256") and "Traceback" not in err
    assert not (tmp_path / "t.json").exists()


def test_train_and_generate_commands_on_the_toy_preset(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--preset", "toy", "--corpus", "tiny", "--vocab-size", "300", "--steps", "20",
                 "--batch-size", "4", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "unigram baseline" in text and "sample:" in text
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "model.npz", "tokenizer.json"]
    assert main(["generate", "--checkpoint", str(out / "model.npz"), "--tokenizer", str(out / "tokenizer.json"),
                 "--prompt", "A token", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("A token")
    # resuming a finished run trains no further and keeps the files valid
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert "resumed at step 20: the run is complete" in capsys.readouterr().out


def test_demo_and_trace_write_the_step_through_page(tmp_path, capsys):
    page = tmp_path / "pages" / "demo.html"
    assert main(["demo", "--figures", str(tmp_path / "figs"), "--html", str(page), "--max-new-tokens", "5"]) == 0
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "http://" not in html and "https://" not in html
    assert "the step-through page" in capsys.readouterr().out
    assert main(["trace", "The return statement", "--html", str(tmp_path / "t.html")]) == 0
    assert (tmp_path / "t.html").stat().st_size > 10_000
    assert main(["trace", "x", "--html", str(tmp_path)]) == 2  # a folder: refused before any work
    assert "is a folder" in capsys.readouterr().err
