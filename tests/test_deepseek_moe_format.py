"""DeepSeek-V3 checkpoints with mixture-of-experts layers: exact round trips, the per-expert file layout,
refusals by name, and parity with ``transformers``' DeepseekV3ForCausalLM in both directions (skipped
without torch/transformers) on fresh random tiny configs: group-limited routing on and off, 0 and 1
shared experts, a non-zero router correction bias."""

import json

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.core.tree import unflatten_like
from minitransformer.interop import deepseek_moe, safetensors as safetensors_io
from minitransformer.interop.deepseek import export_deepseek_v3, load_deepseek_v3
from minitransformer.model import GPT, flatten

DEEPSEEK = dict(attention="mla", positional="rope", ffn="moe", norm="rmsnorm", bias=False, norm_eps=1e-6,
                d_latent=16, d_rope=4, n_experts=8, experts_per_token=2, d_expert=8)
IDS = np.random.default_rng(5).integers(0, 64, size=(2, 9))


def randomised(cfg: ModelConfig, seed=0, std=0.3) -> GPT:
    """Every parameter random (norm gains around 1, the router bias around 0 but not 0)."""
    template = GPT(cfg, seed=seed).params
    rng = np.random.default_rng(seed)
    flat = {k: rng.normal(1.0 if k.endswith((".w", "norm")) else 0.0, 0.05 if k.endswith("b_router") else std,
                          v.shape).astype(np.float32) for k, v in flatten(template).items()}
    return GPT(cfg, params=unflatten_like(flat, template))


def a_model(seed=0, **overrides) -> GPT:
    return randomised(ModelConfig.preset("toy", **{**DEEPSEEK, **overrides}), seed)


ROUTINGS = [dict(), dict(n_expert_groups=4, groups_per_token=2, n_shared_experts=0),
            dict(first_dense_layers=1, n_shared_experts=2, routed_scaling=2.5, normalize_gates=False),
            dict(n_expert_groups=2, groups_per_token=1, first_dense_layers=1, d_latent_q=12, tie_embeddings=False)]


@pytest.mark.parametrize("kw", ROUTINGS)
def test_round_trip_is_exact(tmp_path, kw):
    model = a_model(**kw)
    export_deepseek_v3(model, tmp_path / "ckpt")
    again = load_deepseek_v3(tmp_path / "ckpt")
    assert again.config == model.config.replace(d_ff=model.config.ff_width)  # d_ff is written out
    a, b = flatten(model.params), flatten(again.params)
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) and b[k].dtype == np.float32 for k in a)
    assert np.array_equal(again.forward(IDS), model.forward(IDS))


def test_file_layout_is_one_tensor_per_expert(tmp_path):
    model = a_model(first_dense_layers=1, n_shared_experts=0, n_expert_groups=4, groups_per_token=2)
    folder = export_deepseek_v3(model, tmp_path / "ckpt")
    t = safetensors_io.load_file(folder / "model.safetensors")
    p = model.params["blocks"][1]["mlp"]
    for j in range(8):
        assert np.array_equal(t[f"model.layers.1.mlp.experts.{j}.gate_proj.weight"], p["W_gate"][j].T)  # (M, C)
        assert np.array_equal(t[f"model.layers.1.mlp.experts.{j}.up_proj.weight"], p["W_in"][j].T)
        assert np.array_equal(t[f"model.layers.1.mlp.experts.{j}.down_proj.weight"], p["W_out"][j].T)  # (C, M)
    assert np.array_equal(t["model.layers.1.mlp.gate.weight"], p["W_router"].T)  # (E, C)
    assert np.array_equal(t["model.layers.1.mlp.gate.e_score_correction_bias"], p["b_router"])
    assert t["model.layers.1.mlp.shared_experts.down_proj.weight"].shape == (32, 0)  # S = 0: zero wide
    assert np.array_equal(t["model.layers.0.mlp.up_proj.weight"], model.params["blocks"][0]["mlp"]["W_in"].T)  # dense
    # per MoE layer: router, bias, 3 x 8 experts, 3 shared; per dense layer 3; attention 3 norms... as before
    assert sum(".mlp." in k for k in t) == 3 + (2 + 3 * 8 + 3)
    cfg = json.loads((folder / "config.json").read_text())
    assert {k: cfg[k] for k in ("first_k_dense_replace", "n_routed_experts", "n_shared_experts", "num_experts_per_tok",
                                "n_group", "topk_group", "moe_intermediate_size", "norm_topk_prob")} == \
        dict(first_k_dense_replace=1, n_routed_experts=8, n_shared_experts=0, num_experts_per_tok=2, n_group=4,
             topk_group=2, moe_intermediate_size=8, norm_topk_prob=True)
    # a file without the empty shared tensors loads too
    for name in ("gate_proj", "up_proj", "down_proj"):
        del t[f"model.layers.1.mlp.shared_experts.{name}.weight"]
    safetensors_io.save_file(t, folder / "model.safetensors", metadata={"format": "pt"})
    assert np.array_equal(load_deepseek_v3(folder).forward(IDS), model.forward(IDS))


def test_split_and_stack_are_inverse():
    cfg = ModelConfig.preset("toy", **{**DEEPSEEK, "first_dense_layers": 1, "n_shared_experts": 0})
    flat = flatten(GPT(cfg, seed=1).params)
    split = deepseek_moe.split_experts(flat, cfg)
    assert "blocks.1.mlp.W_gate" not in split and split["blocks.1.mlp.experts.7.W_out"].shape == (8, 32)
    back = deepseek_moe.stack_experts(split, cfg)
    assert set(back) == set(flat) and all(np.array_equal(back[k], flat[k]) for k in flat)


@pytest.mark.parametrize("change, words", [
    (dict(expert_ffn="gelu"), ["expert_ffn='gelu'", "SwiGLU"]),
    (dict(dense_ffn="gelu", first_dense_layers=1), ["dense_ffn='gelu'"]),
])
def test_refuses_what_deepseek_cannot_express(tmp_path, change, words):
    model = GPT(ModelConfig.preset("toy", **{**DEEPSEEK, **change}))
    with pytest.raises(ValueError, match="cannot be written as a DeepSeek-V3 checkpoint") as err:
        export_deepseek_v3(model, tmp_path / "ckpt")
    assert all(w in str(err.value) for w in words), str(err.value)


def test_a_missing_expert_is_named(tmp_path):
    folder = export_deepseek_v3(a_model(), tmp_path / "ckpt")
    t = safetensors_io.load_file(folder / "model.safetensors")
    del t["model.layers.1.mlp.experts.5.up_proj.weight"]
    safetensors_io.save_file(t, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"experts.5.up_proj.weight' is missing"):
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
# (n_group, topk_group, n_shared_experts, first_k_dense_replace): group-limited on/off, S = 0 and 1
HF_ROUTINGS = [(1, 1, 1, 1), (4, 2, 0, 0), (3, 1, 1, 2), (4, 2, 0, 1)]


@pytest.mark.parametrize("n_group, topk_group, shared, first_dense", HF_ROUTINGS)
def test_transformers_deepseek_moe_loads_here_with_the_same_logits(hf, tmp_path, n_group, topk_group, shared,
                                                                   first_dense):
    torch, transformers = hf
    torch.manual_seed(7 + n_group)
    cfg = transformers.DeepseekV3Config(
        vocab_size=301, hidden_size=72, intermediate_size=100, moe_intermediate_size=20, num_hidden_layers=3,
        num_attention_heads=6, num_key_value_heads=6, q_lora_rank=20, kv_lora_rank=28, qk_nope_head_dim=12,
        qk_rope_head_dim=6, v_head_dim=12, first_k_dense_replace=first_dense, n_routed_experts=12,
        num_experts_per_tok=3, n_group=n_group, topk_group=topk_group, n_shared_experts=shared,
        routed_scaling_factor=1.5, max_position_embeddings=40, rope_theta=500.0, tie_word_embeddings=False)
    theirs = transformers.DeepseekV3ForCausalLM(cfg)
    with torch.no_grad():  # random everything, the norms and the router's correction bias included
        for name, p in theirs.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in name else 0.0))
        for name, b in theirs.named_buffers():
            if name.endswith("e_score_correction_bias"):
                b.copy_(torch.randn_like(b) * 0.05)
    theirs.save_pretrained(tmp_path / "hf")
    ours = load_deepseek_v3(tmp_path / "hf")
    c = ours.config
    assert (c.ffn, c.n_experts, c.experts_per_token, c.n_expert_groups, c.groups_per_token, c.n_shared_experts,
            c.first_dense_layers, c.expert_width) == ("moe", 12, 3, n_group, topk_group, shared, first_dense, 20)
    bias = theirs.model.layers[2].mlp.gate.e_score_correction_bias.numpy()
    assert np.abs(bias).max() > 0 and np.array_equal(ours.params["blocks"][2]["mlp"]["b_router"], bias)
    diff = np.abs(ours.forward(PARITY_IDS) - hf_logits(torch, theirs, PARITY_IDS)).max()
    print(f"deepseek MoE transformers -> ours groups {topk_group}/{n_group} shared {shared} dense {first_dense}: "
          f"max |logit diff| f32 {diff:.2e}")
    assert diff < 1e-4


@pytest.mark.parametrize("groups, shared, first_dense, normalize", [((1, 1), 1, 1, True), ((4, 2), 0, 0, True),
                                                                   ((2, 1), 1, 2, False)])
def test_our_moe_export_loads_in_transformers_with_the_same_logits(hf, tmp_path, groups, shared, first_dense,
                                                                   normalize):
    torch, transformers = hf
    cfg = ModelConfig(vocab_size=301, context_length=40, d_model=72, n_layers=3, n_heads=6, d_ff=100,
                      **{**DEEPSEEK, "d_latent": 28, "d_rope": 6}, d_latent_q=20, rope_base=500.0,
                      n_expert_groups=groups[0], groups_per_token=groups[1], n_shared_experts=shared,
                      first_dense_layers=first_dense, normalize_gates=normalize, routed_scaling=2.5)
    ours = randomised(cfg.replace(n_experts=12, experts_per_token=3, d_expert=20), seed=4, std=0.2)
    folder = export_deepseek_v3(ours, tmp_path / "ours")
    theirs, info = transformers.AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert type(theirs).__name__ == "DeepseekV3ForCausalLM"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    diff = np.abs(ours.forward(PARITY_IDS) - hf_logits(torch, theirs, PARITY_IDS)).max()
    print(f"deepseek MoE ours -> transformers groups {groups} shared {shared} dense {first_dense} "
          f"normalize {normalize}: max |logit diff| f32 {diff:.2e}")
    assert diff < 1e-4
