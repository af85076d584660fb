"""GPT-2 checkpoints: the transformers fixture's logits with numpy alone, export round trips, and errors.

The fixture (tests/fixtures/gpt2/, made by make_fixture.py with transformers) is
read with numpy only; the tests that hand our exports to transformers are
skipped when it (or torch) is not installed.
"""

import doctest
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from minitransformer.interop import gpt2
from minitransformer.interop import safetensors as safetensors_io
from minitransformer.core.config import ModelConfig
from minitransformer.interop.gpt2 import export_gpt2, load_gpt2
from minitransformer.model import GPT, flatten

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "gpt2"


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURE / "expected.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def fixture_model():
    return load_gpt2(FIXTURE)


def a_model(seed=0, **overrides) -> GPT:
    """A toy GPT-2-compatible model with large weights, so that logits differ clearly between inputs."""
    return GPT(ModelConfig.preset("toy", init_std=0.3, **overrides), seed=seed)


def copy_fixture(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, folder, ignore=shutil.ignore_patterns("*.py", "*.npz"))
    return folder


def test_docstring_examples():
    result = doctest.testmod(gpt2)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- the fixture, numpy alone
def test_fixture_files_are_small():
    sizes = {p.name: p.stat().st_size for p in FIXTURE.iterdir()}
    assert {"config.json", "model.safetensors", "expected.npz", "make_fixture.py"} <= set(sizes)
    assert sum(sizes.values()) < 300_000


def test_fixture_config(fixture_model):
    c = fixture_model.config
    assert (c.n_layers, c.n_heads, c.d_model, c.vocab_size, c.context_length) == (2, 2, 32, 100, 32)
    assert (c.positional, c.norm, c.ffn, c.attention, c.tie_embeddings, c.bias) == (
        "learned", "layernorm", "gelu", "mha", True, True)


def test_fixture_logits_match_transformers(fixture_model, expected):
    logits = fixture_model.forward(expected["input_ids"])
    assert logits.dtype == np.float32 and logits.shape == expected["logits"].shape == (2, 16, 100)
    assert expected["logits"].std() > 1.0  # the fixture's weights are large enough to make this a real test
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-4, rtol=0)


def test_fixture_greedy_continuation_matches_transformers(fixture_model, expected):
    prompt = expected["greedy"][:, :8]
    ours = fixture_model.generate(prompt, expected["greedy"].shape[1] - 8, temperature=0.0)
    np.testing.assert_array_equal(ours, expected["greedy"])


def test_fixture_cache_has_a_pattern_per_block(fixture_model, expected):
    from minitransformer.model import forward

    _, cache = forward(fixture_model.params, fixture_model.config, expected["input_ids"], need_cache=True, record=True)
    pattern = cache["blocks"][1]["attn"]["hook_pattern"]
    assert pattern.shape == (2, 2, 16, 16)
    np.testing.assert_allclose(pattern.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(pattern[0, 0], k=1) == 0)  # causal


def test_table_covers_every_parameter_once():
    config = ModelConfig.preset("toy")
    ours = [n for _, _, names, _ in gpt2._rows(config) for n in names]
    assert sorted(ours) == sorted(flatten(GPT(config).params))
    assert len({g for g, *_ in gpt2._rows(config)}) == len(list(gpt2._rows(config)))


# --------------------------------------------------------------------------- round trip, numpy alone
def test_round_trip_gives_the_same_params_and_logits(tmp_path):
    model = a_model(d_ff=48, norm_eps=1e-6, dropout=0.1)
    export_gpt2(model, tmp_path / "out")
    again = load_gpt2(tmp_path / "out")
    assert again.config == model.config
    a, b = flatten(model.params), flatten(again.params)
    assert sorted(a) == sorted(b)
    for name in a:
        assert b[name].dtype == np.float32
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    ids = np.random.default_rng(0).integers(0, 64, (2, 16))
    np.testing.assert_array_equal(model.forward(ids), again.forward(ids))


def test_export_writes_what_transformers_expects(tmp_path):
    folder = export_gpt2(a_model(), tmp_path / "out", eos_token_id=63)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    hf = json.loads((folder / "config.json").read_text())
    assert hf["model_type"] == "gpt2" and hf["architectures"] == ["GPT2LMHeadModel"]
    assert (hf["n_layer"], hf["n_head"], hf["n_embd"], hf["vocab_size"], hf["n_positions"]) == (2, 4, 32, 64, 16)
    assert hf["activation_function"] == "gelu_new" and hf["eos_token_id"] == 63
    tensors, metadata, _ = safetensors_io.read_header(folder / "model.safetensors")
    assert metadata == {"format": "pt"}  # transformers refuses files without it
    assert tensors["transformer.h.0.attn.c_attn.weight"]["shape"] == [32, 96]
    assert all(t["dtype"] == "F32" for t in tensors.values())
    assert "lm_head.weight" not in tensors  # tied: transformers ties it on load


def test_checkpoint_variants_load(tmp_path, expected):
    """Names without the ``transformer.`` prefix, a stored copy of the tied head, old mask buffers, float16."""
    tensors = safetensors_io.load_file(FIXTURE / "model.safetensors")
    plain = {k.removeprefix("transformer."): v for k, v in tensors.items()}
    plain["lm_head.weight"] = plain["wte.weight"].copy()
    plain["h.0.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), np.float32))
    plain["h.0.attn.masked_bias"] = np.array(-1e4, np.float32)
    folder = copy_fixture(tmp_path)
    safetensors_io.save_file(plain, folder / "model.safetensors")
    logits = load_gpt2(folder).forward(expected["input_ids"])
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-4, rtol=0)

    half = {k: v.astype(np.float16) for k, v in tensors.items()}
    safetensors_io.save_file(half, folder / "model.safetensors")
    model = load_gpt2(folder)
    assert model.params["embed"]["W_E"].dtype == np.float32
    np.testing.assert_allclose(model.forward(expected["input_ids"]), expected["logits"], atol=0.1)


# --------------------------------------------------------------------------- what GPT-2 cannot express
def variants():
    cases = [
        (dict(positional="rope"), "positional='rope'"),
        (dict(positional="sinusoidal"), "positional='sinusoidal'"),
        (dict(positional="none"), "positional='none'"),
        (dict(ffn="swiglu"), "ffn='swiglu'"),
        (dict(norm="rmsnorm"), "norm='rmsnorm'"),
        (dict(n_kv_heads=2), "grouped-query"),
        (dict(n_kv_heads=1), "multi-query"),
        (dict(tie_embeddings=False), "tie_embeddings=False"),
        (dict(bias=False), "bias=False"),
    ]
    cases.append((dict(attention="mla", positional="rope"), "attention='mla'"))
    return cases


@pytest.mark.parametrize("overrides, name", variants(), ids=lambda v: str(v))
def test_unsupported_variants_are_named(tmp_path, overrides, name):
    model = GPT(ModelConfig.preset("toy", **overrides), seed=0)
    with pytest.raises(ValueError, match=f"cannot be written as a GPT-2 checkpoint.*{name}"):
        export_gpt2(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_several_variants_are_all_named(tmp_path):
    model = GPT(ModelConfig.preset("toy", positional="rope", ffn="swiglu", norm="rmsnorm"), seed=0)
    with pytest.raises(ValueError, match="rope.*swiglu.*rmsnorm"):
        export_gpt2(model, tmp_path)


def test_export_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="eos_token_id=64"):
        export_gpt2(a_model(), tmp_path, eos_token_id=64)
    model = a_model()
    model.params["blocks"][0]["attn"]["W_Q"] = np.zeros((32, 8), np.float32)
    with pytest.raises(ValueError, match="'blocks.0.attn.W_Q' has shape"):
        export_gpt2(model, tmp_path)


# --------------------------------------------------------------------------- broken checkpoints
def edit_config(folder: Path, **changes) -> None:
    hf = json.loads((folder / "config.json").read_text())
    hf.update(changes)
    (folder / "config.json").write_text(json.dumps(hf))


@pytest.mark.parametrize("changes, message", [
    (dict(model_type="llama"), "model_type is 'llama'"),
    (dict(activation_function="gelu"), "activation_function='gelu'"),
    (dict(activation_function="relu"), "activation_function='relu'"),
    (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
    (dict(add_cross_attention=True), "add_cross_attention"),
    (dict(tie_word_embeddings=False), "tie_word_embeddings"),
    (dict(n_embd=64), "'transformer.wte.weight'|'wte.weight' has shape"),
    (dict(n_layer=3), "'h.2.ln_1.weight' is missing"),
    (dict(n_layer=1), "unexpected tensors \\['h.1."),
    (dict(n_head=3), "config.json: d_model=32 must be divisible by n_heads=3"),
    (dict(n_embd="32"), "d_model='32' must be a positive int"),
    (dict(layer_norm_epsilon=None), "config.json: .*NoneType"),
])
def test_bad_configs_are_named(tmp_path, changes, message):
    folder = copy_fixture(tmp_path)
    edit_config(folder, **changes)
    with pytest.raises(ValueError, match=message):
        load_gpt2(folder)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        load_gpt2(tmp_path / "absent")
    with pytest.raises(ValueError, match="no config.json"):
        load_gpt2(tmp_path)
    folder = copy_fixture(tmp_path)
    (folder / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_gpt2(folder)

    folder = copy_fixture(tmp_path / "b")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="model.safetensors is not a valid safetensors file.*truncated"):
        load_gpt2(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickled")
    with pytest.raises(ValueError, match="pytorch_model.bin, which is never loaded"):
        load_gpt2(folder)


def test_untied_head_and_foreign_tensors_are_refused(tmp_path):
    tensors = safetensors_io.load_file(FIXTURE / "model.safetensors")
    folder = copy_fixture(tmp_path)
    safetensors_io.save_file({**tensors, "lm_head.weight": tensors["transformer.wte.weight"] + 1},
                             folder / "model.safetensors")
    with pytest.raises(ValueError, match="differs from wte.weight"):
        load_gpt2(folder)
    safetensors_io.save_file({**tensors, "transformer.h.0.crossattention.q_attn.weight": np.zeros(2, np.float32)},
                             folder / "model.safetensors")
    with pytest.raises(ValueError, match="unexpected tensors.*crossattention"):
        load_gpt2(folder)
    safetensors_io.save_file({**tensors, "transformer.wpe.weight": np.zeros((32, 32), np.int32)},
                             folder / "model.safetensors")
    with pytest.raises(ValueError, match="dtype int32"):
        load_gpt2(folder)


# --------------------------------------------------------------------------- with transformers (optional)
@pytest.fixture(scope="module")
def transformers_gpt2():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers.GPT2LMHeadModel


def test_transformers_loads_our_export(tmp_path, transformers_gpt2):
    import torch

    model = a_model(seed=3)
    export_gpt2(model, tmp_path / "out")
    hf = transformers_gpt2.from_pretrained(tmp_path / "out").eval()
    ids = np.random.default_rng(1).integers(0, 64, (2, 16))
    with torch.no_grad():
        logits = hf(torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(logits, model.forward(ids), atol=1e-4, rtol=0)

    prompt = ids[:1, :4]
    with torch.no_grad():
        theirs = hf.generate(torch.from_numpy(prompt), attention_mask=torch.ones(1, 4, dtype=torch.long),
                             max_new_tokens=12, do_sample=False, pad_token_id=0).numpy()
    ours = model.generate(prompt, 12, temperature=0.0)
    np.testing.assert_array_equal(ours, theirs)
    assert len(set(ours[0, 4:].tolist())) > 1  # a continuation worth comparing, not one token repeated


def test_checkpoint_resaved_by_transformers_loads(tmp_path, transformers_gpt2, expected):
    """The fixture -> transformers -> its own save_pretrained -> our loader: the same logits."""
    hf = transformers_gpt2.from_pretrained(FIXTURE)
    hf.save_pretrained(tmp_path / "resaved")
    np.testing.assert_allclose(load_gpt2(tmp_path / "resaved").forward(expected["input_ids"]), expected["logits"],
                               atol=1e-4, rtol=0)
