"""The files of the transformers formats: an export is one unit, and damaged inputs are named ValueErrors.

- an export (GPT-2, Llama, DeepSeek-V3) into a new or an existing folder is all or
  nothing: a failed write leaves the folder as it was, never new weights under an old config;
- the files of another model that the export does not rewrite (generation_config.json,
  shards, ...) do not survive it; the folder's other files do;
- a tokenizer exported with the model is part of the same unit;
- damaged safetensors headers, config.json files and checkpoints give one ValueError naming the file.
"""

import errno
import io
import json
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.interop import handoff
from minitransformer.interop import safetensors as st
from minitransformer.interop.deepseek import export_deepseek_v3, load_deepseek_v3
from minitransformer.interop.gpt2 import export_gpt2, load_gpt2
from minitransformer.interop.hf_tokenizer import to_hf_dict
from minitransformer.interop.llama import export_llama, load_llama
from minitransformer.model import GPT
from minitransformer.tokenizer import Tokenizer
from minitransformer.training import checkpoint, save_model

LLAMA = dict(positional="rope", ffn="swiglu", norm="rmsnorm", bias=False, n_kv_heads=2)
DEEPSEEK = dict(attention="mla", positional="rope", d_latent=16, d_latent_q=12, d_rope=4, ffn="swiglu",
                norm="rmsnorm", bias=False, norm_eps=1e-6)
DEEPSEEK_MOE = dict(DEEPSEEK, ffn="moe", n_experts=4, n_shared_experts=1, experts_per_token=2, n_expert_groups=2,
                    groups_per_token=1, d_expert=8, first_dense_layers=1)
# format: (export, load, variants, a change that keeps every shape: new weights would load under the old config)
FORMATS = {
    "gpt2": (export_gpt2, load_gpt2, {}, dict(norm_eps=0.5)),
    "llama": (export_llama, load_llama, LLAMA, dict(rope_base=500000.0)),
    "deepseek": (export_deepseek_v3, load_deepseek_v3, DEEPSEEK, dict(rope_base=500000.0)),
}
IDS = np.array([[1, 2, 3, 4, 5, 6]])


def models(fmt):
    """(export, load, old model, new model): the new one has other weights and a config of the same shapes."""
    export, load, variants, change = FORMATS[fmt]
    old = GPT(ModelConfig.preset("toy", **variants), seed=0)
    new = GPT(ModelConfig.preset("toy", **variants, **change), seed=1)
    return export, load, old, new


def failing_write(name: str):
    """Every atomic replace of a file called ``name`` fails as a full disk would."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(dst).name == name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    return mock.patch("os.replace", replace)


def names(folder: Path) -> list:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- an export is all or nothing
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_export_into_an_existing_folder_leaves_the_old_model_whole(tmp_path, fmt):
    export, load, old, new = models(fmt)
    export(old, tmp_path / "ckpt")
    before = load(tmp_path / "ckpt")
    with failing_write("config.json"), pytest.raises(OSError, match="No space left"):
        export(new, tmp_path / "ckpt")  # the weights are written, then the config fails
    again = load(tmp_path / "ckpt")
    assert again.config == before.config
    assert np.array_equal(again.forward(IDS), old.forward(IDS))  # the old weights, not the new ones
    assert names(tmp_path) == ["ckpt"]  # no temporary folder left beside it


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_failed_swap_puts_the_old_folder_back(tmp_path, fmt):
    export, load, old, new = models(fmt)
    export(old, tmp_path / "ckpt")
    real = os.rename

    def rename(src, dst):
        if Path(dst).name == "ckpt" and Path(src).name.endswith(".tmp"):
            raise OSError(errno.EIO, "Input/output error")
        return real(src, dst)

    with mock.patch("os.rename", rename), pytest.raises(OSError, match="Input/output"):
        export(new, tmp_path / "ckpt")
    assert np.array_equal(load(tmp_path / "ckpt").forward(IDS), old.forward(IDS))
    assert names(tmp_path) == ["ckpt"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_follows_the_same_rules_for_the_destination(tmp_path, fmt):
    export, load, old, new = models(fmt)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="afile exists and is not a directory"):
        export(old, tmp_path / "afile")
    with pytest.raises(ValueError, match="does not exist; create it first"):
        export(old, tmp_path / "no" / "such" / "ckpt")
    assert not (tmp_path / "no").exists()
    with failing_write("config.json"), pytest.raises(OSError):
        export(old, tmp_path / "new")
    assert names(tmp_path) == ["afile"]  # a new folder appears whole or not at all
    assert export(new, tmp_path / "new") == tmp_path / "new"
    assert np.array_equal(load(tmp_path / "new").forward(IDS), new.forward(IDS))


def test_the_current_directory_is_not_replaced(tmp_path, monkeypatch):
    export_llama(GPT(ModelConfig.preset("toy", **LLAMA), seed=0), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "inner").mkdir()
    for cwd, dest in ((tmp_path / "ckpt", "."), (tmp_path / "ckpt" / "inner", "..")):
        monkeypatch.chdir(cwd)
        with pytest.raises(ValueError, match="is \\(or holds\\) the current directory"):
            export_llama(GPT(ModelConfig.preset("toy", **LLAMA), seed=1), dest)
    assert names(tmp_path / "ckpt") == ["config.json", "inner", "model.safetensors"]


# --------------------------------------------------------------------------- what happens to the folder's other files
def test_another_models_files_do_not_survive_an_export_but_other_files_do(tmp_path):
    folder = tmp_path / "ckpt"
    export_llama(GPT(ModelConfig.preset("toy", **LLAMA), seed=0), folder, eos_token_id=5)
    stale = {"generation_config.json": '{"eos_token_id": 5}', "model.safetensors.index.json": '{"weight_map": {}}',
             "model-00001-of-00002.safetensors": "x", "pytorch_model.bin": "x", "tokenizer.json": "{}",
             "tokenizer_config.json": "{}", "README.md": "my notes"}
    for name, text in stale.items():
        (folder / name).write_text(text)
    (folder / "runs").mkdir()
    (folder / "runs" / "log.txt").write_text("step 1")
    new = GPT(ModelConfig.preset("toy", **DEEPSEEK), seed=1)
    export_deepseek_v3(new, folder, eos_token_id=7)
    # the model files are the new model's; the tokenizer (none exported) and the other files are kept
    assert names(folder) == ["README.md", "config.json", "model.safetensors", "runs", "tokenizer.json",
                             "tokenizer_config.json"]
    assert (folder / "README.md").read_text() == "my notes" and (folder / "runs" / "log.txt").read_text() == "step 1"
    assert np.array_equal(load_deepseek_v3(folder).forward(IDS), new.forward(IDS))
    tok = Tokenizer.train("hello world, hello there. " * 20, 260)
    export_gpt2(GPT(ModelConfig.preset("toy", vocab_size=260), seed=2), folder, tokenizer=tok)
    # a tokenizer exported with the model replaces the old tokenizer's files as a unit
    assert names(folder) == ["README.md", "config.json", "model.safetensors", "runs", "tokenizer.json"]
    assert json.loads((folder / "tokenizer.json").read_text()) == to_hf_dict(tok)


def test_transformers_generates_with_the_exported_eos_after_an_export_over_save_pretrained(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    export_llama(GPT(ModelConfig.preset("toy", **LLAMA), seed=0), tmp_path / "src", eos_token_id=5)
    transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "src").save_pretrained(tmp_path / "ft")
    assert (tmp_path / "ft" / "generation_config.json").exists()  # what the fine-tune flow leaves
    assert handoff.load_back(tmp_path / "ft").config.vocab_size == 64
    new = GPT(ModelConfig.preset("toy", **LLAMA), seed=1)
    export_llama(new, tmp_path / "ft", eos_token_id=7)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ft", dtype=torch.float32)
    assert hf.config.eos_token_id == 7 and hf.generation_config.eos_token_id == 7
    assert np.array_equal(handoff.load_back(tmp_path / "ft").forward(IDS), new.forward(IDS))


# --------------------------------------------------------------------------- the handoff's tokenizer
@pytest.fixture
def trained(tmp_path):
    tok = Tokenizer.train("hello world, hello there. " * 50, 270, pattern="gpt2")
    save_model(tmp_path / "m.npz", GPT(ModelConfig.preset("toy", vocab_size=tok.vocab_size), seed=0), tokenizer=tok)
    tok.save(tmp_path / "tok.json")
    return tok


def test_the_handoff_writes_the_tokenizer_in_the_same_unit(tmp_path, trained):
    with failing_write("tokenizer.json"), pytest.raises(OSError):
        handoff.export_checkpoint(tmp_path / "m.npz", "gpt2", tmp_path / "out", tmp_path / "tok.json")
    assert not (tmp_path / "out").exists()  # not a folder with the weights but no tokenizer
    path = handoff.export_checkpoint(tmp_path / "m.npz", "gpt2", tmp_path / "out", tmp_path / "tok.json")
    assert names(path) == ["config.json", "model.safetensors", "tokenizer.json"]
    assert json.loads((path / "tokenizer.json").read_text()) == to_hf_dict(trained)


@pytest.mark.parametrize("text, words", [
    ("{oops", "config.json is not valid JSON"),
    ("[1]", "config.json: must hold a JSON object, got list"),
    ('{"model_type": [1]}', "model_type [1]"),
], ids=["bad_json", "a_list", "type_list"])
def test_back_names_a_damaged_config(tmp_path, capsys, text, words):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(text)
    assert handoff.main(["back", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert words in err and str(tmp_path / "bad" / "config.json") in err


# --------------------------------------------------------------------------- damaged safetensors headers
def header_file(path, header: bytes, data: bytes = b"") -> Path:
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


@pytest.mark.parametrize("header, words", [
    (b'{"a": {"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}}', "has dtype \\['F32'\\]"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"__metadata__": 0, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', "maps strings to strings"),
    (b'{"__metadata__": [], "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', "got \\[\\]"),
], ids=["dtype_list", "deep_nesting", "metadata_0", "metadata_list"])
def test_damaged_safetensors_headers_are_named(tmp_path, header, words):
    path = header_file(tmp_path / "w.safetensors", header, b"\0" * 8)
    with pytest.raises(ValueError, match=f"w.safetensors is not a valid safetensors file: .*{words}"):
        st.load_file(path)


# --------------------------------------------------------------------------- damaged config.json files
def damaged(tmp_path, fmt_variants, export, change) -> Path:
    folder = tmp_path / "ckpt"
    export(GPT(ModelConfig.preset("toy", **fmt_variants), seed=0), folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(change)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("variants, change, words", [
    (DEEPSEEK, dict(rms_norm_eps=None), "rms_norm_eps=None must be a number"),
    (DEEPSEEK, dict(rms_norm_eps=[1]), "rms_norm_eps=\\[1\\] must be a number"),
    (DEEPSEEK, dict(first_k_dense_replace="abc"), "first_k_dense_replace='abc' must be a non-negative int"),
    (DEEPSEEK_MOE, dict(routed_scaling_factor=None), "routed_scaling_factor=None must be a number"),
    (DEEPSEEK_MOE, dict(first_k_dense_replace=[1]), "first_k_dense_replace=\\[1\\] must be"),
    (DEEPSEEK, dict(model_type=[1]), "model_type is \\[1\\]; only DeepSeek-V3"),
    (DEEPSEEK, dict(model_type={}), "model_type is {}; only DeepSeek-V3"),
], ids=["eps_null", "eps_list", "first_dense_str", "scaling_null", "first_dense_list", "type_list", "type_dict"])
def test_damaged_deepseek_configs_are_named(tmp_path, variants, change, words):
    folder = damaged(tmp_path, variants, export_deepseek_v3, change)
    with pytest.raises(ValueError, match=f"config.json: {words}"):
        load_deepseek_v3(folder)


@pytest.mark.parametrize("change, words", [
    (dict(model_type=[1]), "model_type is \\[1\\]; only Llama"),
    (dict(model_type={}), "model_type is {}; only Llama"),
    (dict(head_dim={}), "head_dim={}"),
], ids=["type_list", "type_dict", "head_dim_dict"])
def test_damaged_llama_configs_are_named(tmp_path, change, words):
    with pytest.raises(ValueError, match=f"config.json: {words}"):
        load_llama(damaged(tmp_path, LLAMA, export_llama, change))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_rope_or_config_fault_names_the_file_once(tmp_path, fmt):
    export, load, variants, _ = FORMATS[fmt]
    folder = damaged(tmp_path, variants, export, dict(rope_parameters="abc", initializer_range=None)
                     if fmt != "gpt2" else dict(initializer_range=None))
    with pytest.raises(ValueError) as info:
        load(folder)
    assert str(info.value).count("config.json") == 1, str(info.value)
    assert ("rope_parameters must be a JSON object" if fmt != "gpt2" else "initializer_range=None") in str(info.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_config_json_that_is_a_directory_is_named(tmp_path, fmt):
    export, load, variants, _ = FORMATS[fmt]
    folder = tmp_path / "ckpt"
    export(GPT(ModelConfig.preset("toy", **variants), seed=0), folder)
    (folder / "config.json").unlink()
    (folder / "config.json").mkdir()
    with pytest.raises(ValueError, match="config.json is a directory, not a file"):
        load(folder)


# --------------------------------------------------------------------------- numpy checkpoints
def rewritten(tmp_path, change) -> Path:
    """A saved model whose metadata ``change`` edits."""
    save_model(tmp_path / "m.npz", GPT("toy", seed=0))
    with np.load(tmp_path / "m.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop(checkpoint.META_KEY).tobytes())
    change(meta)
    buf = io.BytesIO()
    np.savez(buf, **{checkpoint.META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)}, **arrays)
    (tmp_path / "x.npz").write_bytes(buf.getvalue())
    return tmp_path / "x.npz"


def test_a_newer_checkpoint_says_to_upgrade(tmp_path):
    path = rewritten(tmp_path, lambda m: m.update(version=checkpoint.CHECKPOINT_VERSION + 1))
    with pytest.raises(ValueError, match="x.npz .* written by a newer minitransformer.*upgrade minitransformer"):
        checkpoint.load_model(path)


@pytest.mark.parametrize("value", ["no", 0, None])
def test_weights_only_must_be_a_bool(tmp_path, value):
    path = rewritten(tmp_path, lambda m: m.update(weights_only=value))
    with pytest.raises(ValueError, match=f"x.npz .*weights_only={value!r} must be true or false"):
        checkpoint.load_model(path)
