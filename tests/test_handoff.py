"""The hand-off to PyTorch: export, fine-tune with DDP under torchrun (gloo, 2 CPU processes), load back into numpy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.model import GPT
from minitransformer.interop.handoff import export, finetune, load_back, check_against_transformers, main

pytest.importorskip("torch", reason="fine-tuning runs in PyTorch")
pytest.importorskip("transformers", reason="fine-tuning runs in transformers")

ROOT = Path(__file__).resolve().parents[1]
LLAMA = dict(vocab_size=300, positional="rope", ffn="swiglu", norm="rmsnorm", bias=False, n_kv_heads=2)


def _max_diff(a: GPT, b: GPT) -> float:
    pa, pb = a.named_parameters(), b.named_parameters()
    assert sorted(pa) == sorted(pb)
    return max(float(np.abs(pa[k] - pb[k]).max()) for k in pa)


@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
def test_two_ddp_processes_fine_tune_what_one_does_and_the_result_comes_back_to_numpy(tmp_path):
    start = GPT(ModelConfig.preset("toy", **LLAMA), seed=0)
    export(start, "llama", tmp_path / "hf")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "minitransformer.interop.handoff", "finetune", str(tmp_path / "hf"), "--out", str(tmp_path / "ft2"),
           "--steps", "3", "--batch-size", "4", "--context", "16"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "step 3/3" in done.stdout and "2 processes, cpu" in done.stdout
    losses = finetune(tmp_path / "hf", tmp_path / "ft1", steps=3, batch_size=4, context=16, log=None)
    assert len(losses) == 3 and all(np.isfinite(losses))
    one, two = load_back(tmp_path / "ft1"), load_back(tmp_path / "ft2")
    assert two.config == start.config.replace(d_ff=start.config.ff_width)  # d_ff spelled out
    assert _max_diff(two, start) > 1e-4  # fine-tuning changed the weights
    assert _max_diff(one, two) < 1e-5  # DDP over 2 processes = 1 process on the whole batch (float32 rounding)
    ids = np.array([[1, 5, 9, 200, 7, 3]])
    assert check_against_transformers(tmp_path / "ft2", ids) < 1e-4  # numpy computes what transformers does


def test_gpt2_format_goes_there_and_back(tmp_path, capsys):
    start = GPT(ModelConfig.preset("toy", vocab_size=300), seed=1)
    export(start, "gpt2", tmp_path / "hf")
    finetune(tmp_path / "hf", tmp_path / "ft", steps=2, batch_size=2, context=16, log=None)
    back = load_back(tmp_path / "ft")
    assert back.config.replace(d_ff=None) == start.config and _max_diff(back, start) > 1e-4
    assert main(["back", str(tmp_path / "ft"), "--save", str(tmp_path / "np")]) == 0
    assert "max |logits numpy - transformers|" in capsys.readouterr().out
    assert (tmp_path / "np" / "model.npz").exists()


def test_refusals_name_the_problem(tmp_path):
    model = GPT(ModelConfig.preset("toy", vocab_size=300), seed=0)
    with pytest.raises(ValueError, match="choose one of"):
        export(model, "bert", tmp_path / "x")
    with pytest.raises(ValueError, match="positional"):  # learned positions: not expressible as Llama
        export(model, "llama", tmp_path / "y")
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        load_back(tmp_path / "z")
    assert main(["back", str(tmp_path / "nowhere")]) == 2


def test_the_readme_launch_lines_are_the_ones_tested_here():
    import re
    import shlex

    from minitransformer.cli import build_parser as cli_parser
    from minitransformer.interop.handoff import build_parser

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.+?)\n```", readme, re.S)
    lines = [line for b in blocks for line in b.replace("\\\n", " ").splitlines()
             if "interop.handoff" in line or "torchrun" in line or "--nproc" in line]
    assert len(lines) >= 4
    for line in lines:
        words = shlex.split(line)
        if words[0] == "torchrun":  # the launcher's part is what the tests run: --standalone --nproc-per-node N -m
            assert words[1:3] == ["--standalone", "--nproc-per-node"] and words[4] == "-m", line
            module, args = words[5], words[6:]
        elif words[:2] == ["python3", "-m"]:
            module, args = words[2], words[3:]
        else:
            module, args = "minitransformer", words[1:]
        parser = build_parser() if module == "minitransformer.interop.handoff" else cli_parser()
        assert module in ("minitransformer", "minitransformer.interop.handoff"), line
        parser.parse_args(args)  # every option exists (argparse exits on an unknown one)
