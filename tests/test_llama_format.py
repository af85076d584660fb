"""Llama checkpoints: exact round trips for every supported variant, refusals by name, bad files,
and parity with ``transformers``' LlamaForCausalLM in both directions (skipped without torch/transformers).

The parity models are fresh random ones at sizes no fixture uses (3 layers, 6 heads of width 12,
vocabulary 301); nothing is downloaded.
"""

import doctest
import json
import os
from itertools import product

import numpy as np
import pytest

from minitransformer.core import registry
from minitransformer.interop import hf_checkpoint, llama, safetensors as safetensors_io
from minitransformer.core.config import ModelConfig
from minitransformer.interop.llama import export_llama, load_llama
from minitransformer.model import GPT, flatten
from minitransformer.core.tree import unflatten_like

LLAMA = dict(positional="rope", ffn="swiglu", norm="rmsnorm")
IDS = np.random.default_rng(5).integers(0, 64, size=(2, 9))


def a_model(seed=0, **overrides) -> GPT:
    """A toy Llama-compatible model whose every parameter (norm gains and biases too) is random."""
    cfg = ModelConfig.preset("toy", **{**LLAMA, "bias": False, **overrides})
    rng = np.random.default_rng(seed)
    flat = {k: rng.normal(1.0 if k.endswith(".w") else 0.0, 0.3, v.shape).astype(np.float32)
            for k, v in flatten(GPT(cfg, seed=seed).params).items()}
    return GPT(cfg, params=unflatten_like(flat, GPT(cfg, seed=seed).params))


def test_docstring_examples():
    result = doctest.testmod(llama)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- round trips
COMBOS = list(product(("half", "interleaved"), (4, 2, 1), (True, False), (True, False)))


@pytest.mark.parametrize("style, kv, tied, bias", COMBOS)
def test_round_trip_is_exact(tmp_path, style, kv, tied, bias):
    kv = None if kv == 4 else kv  # the default: as many key/value heads as query heads
    model = a_model(rope_style=style, n_kv_heads=kv, tie_embeddings=tied, bias=bias, rope_base=500.0)
    export_llama(model, tmp_path / "ckpt")
    again = load_llama(tmp_path / "ckpt", rope_style=style)
    assert again.config == model.config.replace(d_ff=model.config.ff_width)  # d_ff is written out
    a, b = flatten(model.params), flatten(again.params)
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) and b[k].dtype == np.float32 for k in a)
    assert np.array_equal(again.forward(IDS), model.forward(IDS))


def test_file_layout_names_and_shapes(tmp_path):
    model = a_model(n_kv_heads=2, tie_embeddings=False, bias=True)
    export_llama(model, tmp_path / "ckpt", eos_token_id=7)
    tensors = safetensors_io.load_file(tmp_path / "ckpt" / "model.safetensors")
    assert safetensors_io.read_metadata(tmp_path / "ckpt" / "model.safetensors") == {"format": "pt"}
    assert tensors["model.layers.1.self_attn.q_proj.weight"].shape == (32, 32)  # (H·D, C)
    assert tensors["model.layers.1.self_attn.k_proj.weight"].shape == (16, 32)  # (G·D, C) = (2·8, 32)
    assert tensors["model.layers.0.mlp.gate_proj.weight"].shape == (model.config.ff_width, 32)
    assert np.array_equal(tensors["model.layers.0.mlp.down_proj.weight"], model.params["blocks"][0]["mlp"]["W_out"].T)
    assert np.array_equal(tensors["lm_head.weight"], model.params["unembed"]["W_U"].T)
    assert len(tensors) == 3 + 2 * 16  # embed, final norm, lm_head; per layer 2 norms, 7 weights, 7 biases
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert (cfg["model_type"], cfg["architectures"], cfg["num_key_value_heads"], cfg["head_dim"]) == \
        ("llama", ["LlamaForCausalLM"], 2, 8)
    assert cfg["attention_bias"] is cfg["mlp_bias"] is True and cfg["tie_word_embeddings"] is False
    assert cfg["eos_token_id"] == 7 and cfg["rope_parameters"]["rope_theta"] == cfg["rope_theta"] == 10000.0


def test_tied_export_has_no_head_and_a_stored_copy_is_accepted(tmp_path):
    model = a_model(tie_embeddings=True)
    folder = export_llama(model, tmp_path / "ckpt")
    tensors = safetensors_io.load_file(folder / "model.safetensors")
    assert "lm_head.weight" not in tensors
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
    safetensors_io.save_file(tensors, folder / "model.safetensors")
    assert np.array_equal(load_llama(folder).forward(IDS), model.forward(IDS))


def test_interleaved_export_is_the_same_function_under_half_rope(tmp_path):
    """Reordering each head's q/k dims turns an interleaved-RoPE model into an equal half-RoPE one."""
    model = a_model(rope_style="interleaved", n_kv_heads=2, bias=True)
    export_llama(model, tmp_path / "ckpt")
    as_half = load_llama(tmp_path / "ckpt")  # Llama's own reading: rotate halves
    assert as_half.config.rope_style == "half"
    assert not np.array_equal(as_half.params["blocks"][0]["attn"]["W_Q"], model.params["blocks"][0]["attn"]["W_Q"])
    assert np.abs(as_half.forward(IDS) - model.forward(IDS)).max() < 1e-5
    order = llama._rope_order(8)
    assert order.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    W_Q = model.params["blocks"][0]["attn"]["W_Q"]  # (C, H·D): head 1's dims 8..15
    assert np.array_equal(as_half.params["blocks"][0]["attn"]["W_Q"][:, 8:16], W_Q[:, 8:16][:, order])


# --------------------------------------------------------------------------- refusals by name
@pytest.mark.parametrize("change, words", [
    (dict(positional="learned"), ["positional='learned'", "only 'rope'"]),
    (dict(positional="sinusoidal"), ["positional='sinusoidal'", "only 'rope'"]),
    (dict(positional="none"), ["positional='none'", "only 'rope'"]),
    (dict(ffn="gelu"), ["ffn='gelu'", "only 'swiglu'"]),
    (dict(norm="layernorm"), ["norm='layernorm'", "only 'rmsnorm'"]),
    (dict(attention="mla", d_latent=16), ["attention='mla'", "deepseek"]),
    (dict(positional="learned", ffn="gelu", norm="layernorm"), ["positional=", "ffn=", "norm="]),
])
def test_refuses_what_llama_cannot_express(tmp_path, change, words):
    model = GPT(ModelConfig.preset("toy", **{**LLAMA, **change}))
    with pytest.raises(ValueError) as err:
        export_llama(model, tmp_path / "ckpt")
    assert all(w in str(err.value) for w in words), str(err.value)
    assert not (tmp_path / "ckpt").exists()  # nothing written


def test_refuses_a_students_registered_variant(tmp_path):
    from minitransformer import positional

    registry.register_positional("alibi_student", init=lambda config, rng: {}, forward=positional.forward,
                                 score_bias=lambda q_pos, k_pos, config: np.zeros((config.n_heads, len(q_pos), len(k_pos))))
    try:
        model = GPT(ModelConfig.preset("toy", **{**LLAMA, "positional": "alibi_student"}))
        with pytest.raises(ValueError, match="positional='alibi_student', a variant registered outside the library"):
            export_llama(model, tmp_path / "ckpt")
    finally:
        registry.unregister("positional", "alibi_student")


@pytest.mark.parametrize("change, message", [
    (dict(model_type="gpt2"), "model_type is 'gpt2'.*gpt2.load_gpt2"),
    (dict(model_type="deepseek_v3"), "load_deepseek_v3"),
    (dict(hidden_act="gelu"), "hidden_act='gelu'"),
    (dict(head_dim=16), "head_dim=16"),
    (dict(mlp_bias=True), "attention_bias=False and mlp_bias=True differ"),
    (dict(rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0}), "rope_type 'llama3'"),
    (dict(rope_scaling={"type": "linear", "factor": 2.0}), "rope_scaling has rope_type 'linear'"),
    (dict(num_key_value_heads=3), "n_heads=4 must be divisible by n_kv_heads=3"),
    (dict(hidden_size="32"), "config.json"),
])
def test_refuses_config_fields_it_cannot_express(tmp_path, change, message):
    folder = export_llama(a_model(), tmp_path / "ckpt")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(ValueError, match=message):
        load_llama(folder)


def test_config_missing_keys_are_named(tmp_path):
    folder = export_llama(a_model(), tmp_path / "ckpt")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["intermediate_size"], cfg["num_hidden_layers"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config.json: missing keys \['intermediate_size', 'num_hidden_layers'\]"):
        load_llama(folder)


# --------------------------------------------------------------------------- bad files
def edit_weights(folder, edit):
    tensors = safetensors_io.load_file(folder / "model.safetensors")
    edit(tensors)
    safetensors_io.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), r"model.safetensors: tensor 'model.layers.1.mlp.up_proj"
                                                           r".weight' is missing"),
    (lambda t: t.update({"model.layers.2.mlp.up_proj.weight": t["model.norm.weight"]}), r"unexpected tensors "
                                                                                         r"\['model.layers.2"),
    (lambda t: t.update({"model.norm.weight": t["model.norm.weight"][:-1]}), r"'model.norm.weight' has shape \(31,\) "
                                                                            r"but config.json's sizes need \(32,\)"),
    (lambda t: t.update({"model.norm.weight": t["model.norm.weight"].astype(np.int32)}), "dtype int32"),
    (lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"] + 1}), "'lm_head.weight' differs from the "
                                                                                 "embedding.*tie_word_embeddings"),
])
def test_bad_weights_name_the_file_and_the_tensor(tmp_path, edit, message):
    folder = export_llama(a_model(tie_embeddings=True), tmp_path / "ckpt")
    edit_weights(folder, edit)
    with pytest.raises(ValueError, match=message) as err:
        load_llama(folder)
    assert str(folder / "model.safetensors") in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        load_llama(tmp_path / "nowhere")
    folder = export_llama(a_model(), tmp_path / "ckpt")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_llama(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no model.safetensors in"):
        load_llama(folder)
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="sharded weights"):
        load_llama(folder)
    (folder / "model.safetensors").write_bytes(data)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_llama(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match="no config.json in"):
        load_llama(folder)


def test_writes_are_atomic_and_keep_other_files(tmp_path, monkeypatch):
    folder = export_llama(a_model(seed=1), tmp_path / "ckpt")
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # the temporary directory was renamed, nothing left over
    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # the usual mode, not mkdtemp's private 0700
    (folder / "tokenizer.json").write_text("{}")
    export_llama(a_model(seed=2), folder)  # into an existing directory: files replaced one by one
    assert (folder / "tokenizer.json").exists()
    assert np.array_equal(load_llama(folder).forward(IDS), a_model(seed=2).forward(IDS))

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(hf_checkpoint, "atomic_write", fail)  # the config write fails after the weights
    with pytest.raises(OSError, match="disk full"):
        export_llama(a_model(seed=3), tmp_path / "new")
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no half-built directory


def test_bad_eos_token_id(tmp_path):
    with pytest.raises(ValueError, match="eos_token_id=64 must be an id of the vocabulary 0..63"):
        export_llama(a_model(), tmp_path / "ckpt", eos_token_id=64)


def test_load_rope_style_is_validated(tmp_path):
    folder = export_llama(a_model(), tmp_path / "ckpt")
    with pytest.raises(ValueError, match="rope_style='sideways' is not valid"):
        load_llama(folder, rope_style="sideways")


# --------------------------------------------------------------------------- parity with transformers
@pytest.fixture(scope="module")
def hf():
    torch = pytest.importorskip("torch", reason="parity with transformers needs torch")
    transformers = pytest.importorskip("transformers", reason="parity needs transformers (the bench extras)")
    return torch, transformers


def hf_logits(torch, hf_model, ids, dtype=None):
    hf_model = hf_model.eval() if dtype is None else hf_model.to(dtype).eval()
    with torch.no_grad():
        return hf_model(torch.tensor(ids)).logits.numpy()


def as_float64(model: GPT) -> GPT:
    flat = {k: v.astype(np.float64) for k, v in flatten(model.params).items()}
    return GPT(model.config, params=unflatten_like(flat, model.params))


PARITY_IDS = np.random.default_rng(11).integers(0, 301, size=(2, 13))


@pytest.mark.parametrize("kv, tied, bias", [(2, False, False), (1, True, True), (6, False, True)])
def test_transformers_llama_loads_here_with_the_same_logits(hf, tmp_path, kv, tied, bias):
    torch, transformers = hf
    torch.manual_seed(kv)
    cfg = transformers.LlamaConfig(vocab_size=301, hidden_size=72, intermediate_size=100, num_hidden_layers=3,
                                   num_attention_heads=6, num_key_value_heads=kv, max_position_embeddings=40,
                                   rope_theta=500.0, rms_norm_eps=1e-5, tie_word_embeddings=tied,
                                   attention_bias=bias, mlp_bias=bias)
    theirs = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # random everything, norms and biases included
        for name, p in theirs.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name else 0.0))
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_llama(tmp_path / "hf")
    assert (ours.config.n_layers, ours.config.kv_heads, ours.config.d_head, ours.config.tie_embeddings,
            ours.config.bias, ours.config.rope_base) == (3, kv, 12, tied, bias, 500.0)
    diff32 = np.abs(ours.forward(PARITY_IDS) - hf_logits(torch, theirs, PARITY_IDS)).max()
    # note: in float64 too, transformers computes RMSNorm and the RoPE angles in float32, so the
    # float64 runs agree no more closely than float32 ones (about 1e-5 on logits of size 10)
    diff64 = np.abs(as_float64(ours).forward(PARITY_IDS) - hf_logits(torch, theirs, PARITY_IDS, torch.float64)).max()
    print(f"llama transformers -> ours kv={kv} tied={tied} bias={bias}: max |logit diff| f32 {diff32:.2e} f64 {diff64:.2e}")
    assert diff32 < 1e-4 and diff64 < 1e-4


@pytest.mark.parametrize("style, kv, tied, bias", [("half", 2, False, False), ("interleaved", 1, True, True),
                                                   ("interleaved", 6, False, False)])
def test_our_export_loads_in_transformers_with_the_same_logits(hf, tmp_path, style, kv, tied, bias):
    torch, transformers = hf
    cfg = ModelConfig(vocab_size=301, context_length=40, d_model=72, n_layers=3, n_heads=6, n_kv_heads=kv,
                      d_ff=100, rope_style=style, rope_base=500.0, tie_embeddings=tied, bias=bias, **LLAMA)
    rng = np.random.default_rng(kv)
    template = GPT(cfg).params
    ours = GPT(cfg, params=unflatten_like({k: rng.normal(1.0 if k.endswith(".w") else 0.0, 0.2, v.shape)
                                           .astype(np.float32) for k, v in flatten(template).items()}, template))
    folder = export_llama(ours, tmp_path / "ours")
    theirs, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert type(theirs).__name__ == "LlamaForCausalLM"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    diff32 = np.abs(ours.forward(PARITY_IDS) - hf_logits(torch, theirs, PARITY_IDS)).max()
    print(f"llama ours -> transformers {style} kv={kv} tied={tied} bias={bias}: max |logit diff| f32 {diff32:.2e}")
    assert diff32 < 1e-4
