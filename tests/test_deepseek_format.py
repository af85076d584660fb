"""DeepSeek-V3 checkpoints (MLA, dense layers): exact round trips, refusals by name, bad files, and
parity with ``transformers``' DeepseekV3ForCausalLM in both directions (skipped without torch/transformers).

The parity models are fresh random ones at sizes no fixture uses (3 layers, 6 heads of width 12,
latents of 28 and 20, a RoPE channel of 6, vocabulary 301); nothing is downloaded.
"""

import doctest
import json
from itertools import product

import numpy as np
import pytest

from minitransformer.attention import mla as attention_mla
from minitransformer.core import registry
from minitransformer.interop import deepseek, mla_layout, safetensors as safetensors_io
from minitransformer.core.config import ModelConfig
from minitransformer.interop.deepseek import export_deepseek_v3, load_deepseek_v3
from minitransformer.model import GPT, flatten
from minitransformer.core.tree import unflatten_like

DEEPSEEK = dict(attention="mla", positional="rope", ffn="swiglu", norm="rmsnorm", bias=False, norm_eps=1e-6,
                d_latent=16, d_rope=4)
IDS = np.random.default_rng(5).integers(0, 64, size=(2, 9))


def randomised(cfg: ModelConfig, seed=0, std=0.3) -> GPT:
    """A model whose every parameter (norm gains too: around 1) is random."""
    template = GPT(cfg, seed=seed).params
    rng = np.random.default_rng(seed)
    flat = {k: rng.normal(1.0 if k.endswith((".w", "norm")) else 0.0, std, v.shape).astype(np.float32)
            for k, v in flatten(template).items()}
    return GPT(cfg, params=unflatten_like(flat, template))


def a_model(seed=0, **overrides) -> GPT:
    return randomised(ModelConfig.preset("toy", **{**DEEPSEEK, **overrides}), seed)


def test_docstring_examples():
    result = doctest.testmod(deepseek)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("q_rank, style, tied", list(product((None, 12), ("half", "interleaved"), (True, False))))
def test_round_trip_is_exact(tmp_path, q_rank, style, tied):
    model = a_model(d_latent_q=q_rank, rope_style=style, tie_embeddings=tied, rope_base=300.0)
    export_deepseek_v3(model, tmp_path / "ckpt")
    again = load_deepseek_v3(tmp_path / "ckpt")
    assert again.config == model.config.replace(d_ff=model.config.ff_width)  # d_ff is written out
    a, b = flatten(model.params), flatten(again.params)
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) and b[k].dtype == np.float32 for k in a)
    assert np.array_equal(again.forward(IDS), model.forward(IDS))


@pytest.mark.parametrize("q_rank", [None, 12])
def test_file_layout_is_deepseeks_fused_layout(tmp_path, q_rank):
    model = a_model(d_latent_q=q_rank, tie_embeddings=False, rope_style="interleaved")
    folder = export_deepseek_v3(model, tmp_path / "ckpt", eos_token_id=3)
    tensors = safetensors_io.load_file(folder / "model.safetensors")
    packed = mla_layout.to_deepseek_layout(model.params["blocks"][1]["attn"], model.config)
    names = {"wkv_a": "kv_a_proj_with_mqa.weight", "wkv_b": "kv_b_proj.weight", "wo": "o_proj.weight",
             "kv_norm": "kv_a_layernorm.weight", "wq": "q_proj.weight", "wq_a": "q_a_proj.weight",
             "wq_b": "q_b_proj.weight", "q_norm": "q_a_layernorm.weight"}
    assert all(np.array_equal(tensors[f"model.layers.1.self_attn.{names[k]}"], v) for k, v in packed.items())
    H, Dh, Dv, Dc, Dq, Dr = attention_mla.dims(model.config)
    assert tensors["model.layers.0.self_attn.kv_b_proj.weight"].shape == (H * (Dh + Dv), Dc)  # (32, 16)
    assert tensors["model.layers.0.self_attn.kv_a_proj_with_mqa.weight"].shape == (Dc + Dr, 32)
    assert np.array_equal(tensors["model.layers.0.mlp.up_proj.weight"], model.params["blocks"][0]["mlp"]["W_in"].T)
    # embed, final norm, lm_head; per layer 3 norms, kv_a, kv_b, o, the query (q_proj, or q_a, its norm, q_b), MLP
    assert len(tensors) == 3 + 2 * (3 + 3 + (3 if q_rank else 1) + 3)
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["model_type"], cfg["architectures"], cfg["q_lora_rank"], cfg["kv_lora_rank"]) == \
        ("deepseek_v3", ["DeepseekV3ForCausalLM"], q_rank, 16)
    assert (cfg["qk_nope_head_dim"], cfg["v_head_dim"], cfg["qk_rope_head_dim"], cfg["rope_interleave"]) == (8, 8, 4, True)
    assert cfg["first_k_dense_replace"] == cfg["num_hidden_layers"] == 2 and cfg["num_key_value_heads"] == 4
    assert cfg["eos_token_id"] == 3 and cfg["tie_word_embeddings"] is False


# --------------------------------------------------------------------------- refusals by name
@pytest.mark.parametrize("change, words", [
    (dict(attention="mha", d_latent=None, d_rope=None), ["attention='mha'", "only 'mla'", "llama"]),
    (dict(positional="learned", d_rope=None), ["positional='learned'", "only 'rope'"]),
    (dict(positional="none", d_rope=0), ["positional='none'"]),
    (dict(ffn="gelu"), ["ffn='gelu'", "only 'swiglu'"]),
    (dict(norm="layernorm"), ["norm='layernorm'", "only 'rmsnorm'"]),
    (dict(bias=True), ["bias=True", "no biases"]),
    (dict(latent_norm=False), ["latent_norm=False", "kv_a_layernorm"]),
    (dict(softmax_scale_mult=2.0), ["softmax_scale_mult=2.0", "YaRN"]),
    (dict(norm_eps=1e-5), ["norm_eps=1e-05", "norm_eps=1e-06"]),
])
def test_refuses_what_deepseek_cannot_express(tmp_path, change, words):
    model = GPT(ModelConfig.preset("toy", **{**DEEPSEEK, **change}))
    with pytest.raises(ValueError, match="cannot be written as a DeepSeek-V3 checkpoint") as err:
        export_deepseek_v3(model, tmp_path / "ckpt")
    assert all(w in str(err.value) for w in words), str(err.value)
    assert not (tmp_path / "ckpt").exists()


def test_refuses_a_students_registered_variant(tmp_path):
    registry.register_ffn("my_ffn", init=lambda config, rng: {"W_in": np.zeros((config.d_model, 8), np.float32)},
                          forward=lambda params, x, config, need_cache=None: (x @ params["W_in"] @ params["W_in"].T, None))
    try:
        model = GPT(ModelConfig.preset("toy", **{**DEEPSEEK, "ffn": "my_ffn"}))
        with pytest.raises(ValueError, match="ffn='my_ffn', a variant registered outside the library"):
            export_deepseek_v3(model, tmp_path / "ckpt")
    finally:
        registry.unregister("ffn", "my_ffn")


@pytest.mark.parametrize("change, message", [
    (dict(model_type="llama"), "model_type is 'llama'.*llama.load_llama"),
    (dict(model_type="qwen2"), "model_type is 'qwen2'; only DeepSeek-V3"),
    (dict(first_k_dense_replace=1), "tensor .model.layers.1.mlp.gate.weight. is missing"),
    (dict(hidden_act="gelu"), "hidden_act='gelu'"),
    (dict(attention_bias=True), "attention_bias=true"),
    (dict(num_key_value_heads=1), "num_key_value_heads=1"),
    (dict(v_head_dim=4), "v_head_dim=4 is not hidden_size / num_attention_heads"),
    (dict(qk_rope_head_dim=0), "qk_rope_head_dim=0"),
    (dict(qk_rope_head_dim=3), "d_rope=3 must be even"),
    (dict(rms_norm_eps=1e-5), "rms_norm_eps=1e-05"),
    (dict(rope_parameters={"rope_type": "yarn", "factor": 40.0, "rope_theta": 1e4}), "rope_type 'yarn'"),
    (dict(rope_interleave="yes"), "rope_interleave='yes'"),
])
def test_refuses_config_fields_it_cannot_express(tmp_path, change, message):
    folder = export_deepseek_v3(a_model(), tmp_path / "ckpt")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    with pytest.raises(ValueError, match=message) as err:
        load_deepseek_v3(folder)
    assert "config.json" in str(err.value)


def test_a_file_without_optional_keys_gets_transformers_defaults(tmp_path):
    """Keys a config.json omits mean DeepseekV3Config's defaults (q_lora_rank 1536, ...), so shapes disagree."""
    folder = export_deepseek_v3(a_model(d_latent_q=12), tmp_path / "ckpt")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["q_lora_rank"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"q_a_proj.weight' has shape \(12, 32\) but config.json's sizes need "
                                         r"\(1536, 32\)"):
        load_deepseek_v3(folder)


# --------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("edit, message", [
    (lambda t: t.pop("model.layers.1.self_attn.kv_b_proj.weight"), "'model.layers.1.self_attn.kv_b_proj.weight' is "
                                                                    "missing"),
    (lambda t: t.update({"model.layers.1.mlp.experts.down_proj": np.zeros((2, 32, 8), np.float32)}),
     r"unexpected tensors \['model.layers.1.mlp.experts.down_proj'\]"),
    (lambda t: t.update({"model.layers.0.self_attn.q_proj.weight": np.zeros((48, 32), np.float32)}),
     "unexpected tensors.*q_proj"),  # a direct q_proj next to q_a_proj/q_b_proj
    (lambda t: t.update({"model.layers.0.self_attn.kv_a_layernorm.weight": np.ones(17, np.float32)}),
     r"kv_a_layernorm.weight' has shape \(17,\) but config.json's sizes need \(16,\)"),
])
def test_bad_weights_name_the_file_and_the_tensor(tmp_path, edit, message):
    folder = export_deepseek_v3(a_model(d_latent_q=12), tmp_path / "ckpt")
    tensors = safetensors_io.load_file(folder / "model.safetensors")
    edit(tensors)
    safetensors_io.save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=message) as err:
        load_deepseek_v3(folder)
    assert str(folder / "model.safetensors") in str(err.value)


def test_missing_files(tmp_path):
    folder = export_deepseek_v3(a_model(), tmp_path / "ckpt")
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match="no config.json in .*a DeepSeek-V3 checkpoint directory has"):
        load_deepseek_v3(folder)


# --------------------------------------------------------------------------- parity with transformers
@pytest.fixture(scope="module")
def hf():
    torch = pytest.importorskip("torch", reason="parity with transformers needs torch")
    transformers = pytest.importorskip("transformers", reason="parity needs transformers (the bench extras)")
    return torch, transformers


def hf_logits(torch, hf_model, ids):
    with torch.no_grad():
        return hf_model.eval()(torch.tensor(ids)).logits.numpy()


PARITY_IDS = np.random.default_rng(11).integers(0, 301, size=(2, 13))


@pytest.mark.parametrize("q_rank, interleave, tied", [(None, True, False), (20, False, True), (20, True, False)])
def test_transformers_deepseek_loads_here_with_the_same_logits(hf, tmp_path, q_rank, interleave, tied):
    torch, transformers = hf
    torch.manual_seed(3)
    cfg = transformers.DeepseekV3Config(
        vocab_size=301, hidden_size=72, intermediate_size=100, num_hidden_layers=3, num_attention_heads=6,
        num_key_value_heads=6, q_lora_rank=q_rank, kv_lora_rank=28, qk_nope_head_dim=12, qk_rope_head_dim=6,
        v_head_dim=12, first_k_dense_replace=3, rope_interleave=interleave, max_position_embeddings=40,
        rope_theta=500.0, tie_word_embeddings=tied)
    theirs = transformers.DeepseekV3ForCausalLM(cfg)
    with torch.no_grad():  # random everything, the latent norms included
        for name, p in theirs.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name else 0.0))
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_deepseek_v3(tmp_path / "hf")
    c = ours.config
    assert (c.n_layers, c.latent_dim, c.latent_q_dim, c.rope_dim, c.d_head, c.tie_embeddings) == \
        (3, 28, q_rank or 0, 6, 12, tied)
    assert c.rope_style == ("interleaved" if interleave else "half")
    diff = np.abs(ours.forward(PARITY_IDS) - hf_logits(torch, theirs, PARITY_IDS)).max()
    print(f"deepseek transformers -> ours q_lora_rank={q_rank} interleave={interleave} tied={tied}: "
          f"max |logit diff| f32 {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.parametrize("q_rank, style, tied", [(20, "interleaved", True), (None, "half", False)])
def test_our_export_loads_in_transformers_with_the_same_logits(hf, tmp_path, q_rank, style, tied):
    torch, transformers = hf
    cfg = ModelConfig(vocab_size=301, context_length=40, d_model=72, n_layers=3, n_heads=6, d_ff=100,
                      **{**DEEPSEEK, "d_latent": 28, "d_rope": 6}, d_latent_q=q_rank, rope_style=style,
                      rope_base=500.0, tie_embeddings=tied)
    ours = randomised(cfg, seed=4, std=0.2)
    folder = export_deepseek_v3(ours, tmp_path / "ours")
    theirs, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert type(theirs).__name__ == "DeepseekV3ForCausalLM"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    diff = np.abs(ours.forward(PARITY_IDS) - hf_logits(torch, theirs, PARITY_IDS)).max()
    print(f"deepseek ours -> transformers q_lora_rank={q_rank} {style} tied={tied}: max |logit diff| f32 {diff:.2e}")
    assert diff < 1e-4
