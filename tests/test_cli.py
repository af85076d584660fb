import subprocess
import sys

from minitransformer.cli import main


def test_demo_steps_through_the_tokenizer_stage(capsys):
    assert main(["demo", "--color", "never", "--vocab-size", "512"]) == 0
    out = capsys.readouterr().out
    for concept in ("distinction", "classification", "indexing", "retrieval", "processing"):
        assert concept in out
    assert "Stage 1: BPE tokenization (concept: distinction)" in out
    assert "learned 256 merges" in out
    assert "bytes per token" in out and "Special tokens are guarded" in out


def test_demo_runs_as_the_installed_command():
    # the README's first set-up command runs `minitransformer demo`; the module form is the same entry point
    result = subprocess.run(
        [sys.executable, "-m", "minitransformer", "demo", "--color", "never"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Token boundaries:" in result.stdout


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
    assert sorted(p.name for p in out.iterdir()) == ["loss.png", "model.npz", "model.npz.json", "tokenizer.json"]
    assert main(["generate", "--checkpoint", str(out / "model.npz"), "--tokenizer", str(out / "tokenizer.json"),
                 "--prompt", "A token", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("A token")
    # resuming a finished run trains no further and keeps the files valid
    assert main(["train", "--preset", "toy", "--corpus", "tiny", "--vocab-size", "300", "--steps", "20",
                 "--batch-size", "4", "--out", str(out), "--resume"]) == 0
    assert "resumed at step 20" in capsys.readouterr().out
