"""DeepSeek-V3 checkpoints in and out: Multi-Head Latent Attention in ``transformers``' layout.

A DeepSeek-V3-format checkpoint is a directory with ``config.json`` (a
``DeepseekV3Config`` dict, ``model_type "deepseek_v3"``) and ``model.safetensors``,
which ``AutoModelForCausalLM.from_pretrained(dir)`` loads as ``DeepseekV3ForCausalLM``.

The combination of our variants it expresses: MLA attention (`attention.mla`)
with normalised latents, with or without query compression (``d_latent_q`` ->
``q_lora_rank``, None when absent), decoupled RoPE in either style
(``rope_style="interleaved"`` <-> ``rope_interleave: true``, transformers'
default and DeepSeek's own layout; ``"half"`` <-> ``false``), RMSNorm, a
bias-free SwiGLU MLP in every layer (``ffn="swiglu"``: ``first_k_dense_replace =
n_layers``) or DeepSeek-V3's mixture of experts after ``first_dense_layers`` dense
ones (``ffn="moe"``, SwiGLU experts; `deepseek_moe` maps its fields and per-expert
tensors), and a tied or untied head. Anything else is refused
with a ValueError naming the field and what DeepSeek-V3 supports.

    >>> import tempfile
    >>> from minitransformer.core.config import ModelConfig
    >>> cfg = ModelConfig.preset("toy", attention="mla", positional="rope", d_latent=16, d_latent_q=12, d_rope=4,
    ...                          ffn="swiglu", norm="rmsnorm", bias=False, norm_eps=1e-6)
    >>> model = GPT(cfg, seed=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = export_deepseek_v3(model, folder + "/ds")
    ...     again = load_deepseek_v3(folder + "/ds")
    >>> ids = np.array([[1, 2, 3]])
    >>> bool(np.array_equal(again.forward(ids), model.forward(ids)))
    True

How the attention weights move: `mla_layout.to_deepseek_layout` already turns
our role-named (in, out) matrices into DeepSeek's fused (out, in) ones (``wq_a``,
``wq_b`` or ``wq``, ``wkv_a``, ``wkv_b``, ``wo``, with every head's rows together),
and transformers keeps exactly that layout under other names; the table below only
renames. Sizes map as qk_nope_head_dim = v_head_dim = d_head, qk_rope_head_dim =
d_R, kv_lora_rank = d_c, q_lora_rank = d_c'.

note: DeepSeek-V3's latent norms (``q_a_layernorm``, ``kv_a_layernorm``) use a fixed
epsilon of 1e-6 while ours use ``norm_eps``, so a model exports exactly only with
``norm_eps=1e-6`` (checked).

Deliberately left out: multi-token prediction modules, YaRN context extension, and FP8 weights.

References: DeepSeek-AI (2024), "DeepSeek-V3 Technical Report" (arXiv 2412.19437)
§2.1; the names are those of ``transformers``' ``modeling_deepseek_v3.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..core import registry
from ..core.config import ModelConfig
from ..core.fileio import PathLike
from ..core.tree import flatten, unflatten_like
from ..model import GPT, init_params
from ..attention.mla import dims as mla_dims
from . import deepseek_moe, hf_checkpoint, mla_layout

# --------------------------------------------------------------------------- the name table
# One row per DeepSeek-V3 tensor: name, shape, our name, how. The attention rows name the fused
# matrices of `mla_layout.to_deepseek_layout` (already (out, in): "same"); the MLP is
# transposed ("T"). Sizes: V vocabulary, C width, F MLP width, Dq query latent (q_lora_rank),
# Dc key/value latent (kv_lora_rank), DcR = Dc + Dr, HQ = H·(Dh + Dr), HKV = H·(Dh + Dv),
# HV = H·Dv; for the mixture of experts E routed experts, M = moe_intermediate_size, SM = S·M
# (S shared experts). A row applies when the model has our parameter (wq without query compression,
# wq_a/q_norm/wq_b with it; lm_head only when untied; the dense MLP rows in dense layers, the
# expert rows in MoE layers). ``{j}`` is a routed expert (see `deepseek_moe.split_experts`).
TABLE: list[tuple[str, str, str, str]] = [
    # transformers name                                      shape     our name                  how
    ("model.embed_tokens.weight",                            "V C",    "embed.W_E",              "same"),
    ("model.layers.{i}.input_layernorm.weight",              "C",      "blocks.{i}.ln1.w",       "same"),
    ("model.layers.{i}.self_attn.q_proj.weight",             "HQ C",   "blocks.{i}.attn.wq",     "same"),
    ("model.layers.{i}.self_attn.q_a_proj.weight",           "Dq C",   "blocks.{i}.attn.wq_a",   "same"),
    ("model.layers.{i}.self_attn.q_a_layernorm.weight",      "Dq",     "blocks.{i}.attn.q_norm", "same"),
    ("model.layers.{i}.self_attn.q_b_proj.weight",           "HQ Dq",  "blocks.{i}.attn.wq_b",   "same"),
    ("model.layers.{i}.self_attn.kv_a_proj_with_mqa.weight", "DcR C",  "blocks.{i}.attn.wkv_a",  "same"),
    ("model.layers.{i}.self_attn.kv_a_layernorm.weight",     "Dc",     "blocks.{i}.attn.kv_norm", "same"),
    ("model.layers.{i}.self_attn.kv_b_proj.weight",          "HKV Dc", "blocks.{i}.attn.wkv_b",  "same"),
    ("model.layers.{i}.self_attn.o_proj.weight",             "C HV",   "blocks.{i}.attn.wo",     "same"),
    ("model.layers.{i}.post_attention_layernorm.weight",     "C",      "blocks.{i}.ln2.w",       "same"),
    # dense layers (i < first_k_dense_replace)
    ("model.layers.{i}.mlp.gate_proj.weight",                "F C",    "blocks.{i}.mlp.W_gate",  "T"),
    ("model.layers.{i}.mlp.up_proj.weight",                  "F C",    "blocks.{i}.mlp.W_in",    "T"),
    ("model.layers.{i}.mlp.down_proj.weight",                "C F",    "blocks.{i}.mlp.W_out",   "T"),
    # mixture-of-experts layers (i >= first_k_dense_replace): the router, its bias, each routed expert
    ("model.layers.{i}.mlp.gate.weight",                     "E C",    "blocks.{i}.mlp.W_router", "T"),
    ("model.layers.{i}.mlp.gate.e_score_correction_bias",    "E",      "blocks.{i}.mlp.b_router", "same"),
    ("model.layers.{i}.mlp.experts.{j}.gate_proj.weight",    "M C",    "blocks.{i}.mlp.experts.{j}.W_gate", "T"),
    ("model.layers.{i}.mlp.experts.{j}.up_proj.weight",      "M C",    "blocks.{i}.mlp.experts.{j}.W_in", "T"),
    ("model.layers.{i}.mlp.experts.{j}.down_proj.weight",    "C M",    "blocks.{i}.mlp.experts.{j}.W_out", "T"),
    # ... and the shared experts, one MLP S·M wide (zero wide when S = 0)
    ("model.layers.{i}.mlp.shared_experts.gate_proj.weight", "SM C",   "blocks.{i}.mlp.W_gate_shared", "T"),
    ("model.layers.{i}.mlp.shared_experts.up_proj.weight",   "SM C",   "blocks.{i}.mlp.W_in_shared", "T"),
    ("model.layers.{i}.mlp.shared_experts.down_proj.weight", "C SM",   "blocks.{i}.mlp.W_out_shared", "T"),
    ("model.norm.weight",                                    "C",      "ln_final.w",             "same"),
    ("lm_head.weight",                                       "V C",    "unembed.W_U",            "T"),
]
TIED_HEAD = "lm_head.weight"
LATENT_EPS = 1e-6  # the epsilon of DeepSeek-V3's q_a_layernorm and kv_a_layernorm (not configurable)
DEFAULTS = dict(q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                first_k_dense_replace=3, rope_interleave=True)  # DeepseekV3Config's, for keys a file omits


def _sizes(config: ModelConfig) -> dict:
    H, Dh, Dv, Dc, Dq, Dr = mla_dims(config)
    return {"V": config.vocab_size, "C": config.d_model, "F": config.ff_width, "Dq": Dq, "Dc": Dc,
            "DcR": Dc + Dr, "HQ": H * (Dh + Dr), "HKV": H * (Dh + Dv), "HV": H * Dv, **deepseek_moe.sizes(config)}


def _table(config: ModelConfig) -> list:
    """`TABLE` with the ``{j}`` rows repeated for each routed expert of ``config``."""
    return deepseek_moe.expand_experts(TABLE, config.n_experts if config.ffn == "moe" else 0)


def _fused(params: dict, config: ModelConfig) -> dict:
    """Our flat parameters with each block's attention in DeepSeek's fused layout (``blocks.0.attn.wkv_a``),
    and each MoE block's experts one by one (``blocks.1.mlp.experts.0.W_gate``)."""
    flat = deepseek_moe.split_experts({k: v for k, v in flatten(params).items() if ".attn." not in k}, config)
    for i, block in enumerate(params["blocks"]):
        for name, value in mla_layout.to_deepseek_layout(block["attn"], config).items():
            flat[f"blocks.{i}.attn.{name}"] = value
    return flat


def _miniature(config: ModelConfig) -> tuple[ModelConfig, dict]:
    """A config with ``config``'s variants and tiny sizes, and its parameters: the names, instantly."""
    small = config.replace(vocab_size=1, context_length=1, d_model=2 * config.n_heads, d_ff=1, d_latent=1,
                           d_latent_q=1 if config.latent_q_dim else None, d_rope=2,
                           **({"d_expert": 1} if config.ffn == "moe" else {}))
    return small, init_params(small, np.random.default_rng(0))


# --------------------------------------------------------------------------- config.json
def check_deepseek_compatible(config: ModelConfig) -> None:
    """Raise a ValueError naming every field of ``config`` that a DeepSeek-V3 checkpoint cannot express."""
    problems = []

    def own(kind, name):
        return "" if registry.get(kind, name).builtin else ", a variant registered outside the library"

    if config.attention != "mla":
        hint = "; write it with llama.export_llama" if config.attention == "mha" else ""
        problems.append(f"attention={config.attention!r}{own('attention', config.attention)} "
                        f"(DeepSeek-V3 supports only 'mla', Multi-Head Latent Attention{hint})")
    if config.positional != "rope":
        problems.append(f"positional={config.positional!r}{own('positional', config.positional)} "
                        "(DeepSeek-V3 supports only 'rope', in MLA's decoupled RoPE channel)")
    if config.ffn not in ("swiglu", "moe"):
        problems.append(f"ffn={config.ffn!r}{own('ffn', config.ffn)} (DeepSeek-V3 supports only 'swiglu' "
                        "and its mixture of experts, 'moe')")
    problems += deepseek_moe.problems(config)
    if config.norm != "rmsnorm":
        problems.append(f"norm={config.norm!r} (DeepSeek-V3 supports only 'rmsnorm')")
    if config.bias:
        problems.append("bias=True (DeepSeek-V3's MLP has no biases; use bias=False)")
    if config.attention == "mla":
        if not config.latent_norm:
            problems.append("latent_norm=False (DeepSeek-V3 always normalises the latents: kv_a_layernorm, "
                            "q_a_layernorm)")
        if config.softmax_scale_mult != 1.0:
            problems.append(f"softmax_scale_mult={config.softmax_scale_mult} (DeepSeek-V3 scales scores by "
                            "1/sqrt(qk_nope_head_dim + qk_rope_head_dim) unless YaRN is configured, which is "
                            "not supported here; use 1.0)")
        if config.norm_eps != LATENT_EPS:
            problems.append(f"norm_eps={config.norm_eps} (DeepSeek-V3's latent norms use a fixed {LATENT_EPS}, "
                            f"and ours use norm_eps; use norm_eps={LATENT_EPS})")
    if problems:
        raise ValueError("this model cannot be written as a DeepSeek-V3 checkpoint: " + "; ".join(problems) + ".")


def config_to_deepseek(config: ModelConfig, eos_token_id: Optional[int] = None) -> dict:
    """The ``config.json`` dict of a DeepSeek-V3 with ``config``'s sizes (after `check_deepseek_compatible`)."""
    check_deepseek_compatible(config)
    H, Dh, Dv, Dc, Dq, Dr = mla_dims(config)
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.ff_width,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": H,
        "num_key_value_heads": H,  # MLA rebuilds a key and a value for every head
        "q_lora_rank": Dq or None,  # None: no query compression (a direct q_proj)
        "kv_lora_rank": Dc,
        "qk_nope_head_dim": Dh,
        "qk_rope_head_dim": Dr,
        "v_head_dim": Dv,
        "rope_interleave": config.rope_style == "interleaved",
        "hidden_act": "silu",
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_base,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base},
        "attention_bias": False,
        "attention_dropout": 0.0,
        **deepseek_moe.config_to_hf(config),  # first_k_dense_replace, and the experts' sizes and routing
        "num_nextn_predict_layers": 0,  # no multi-token prediction module
        "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": config.init_std,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "torch_dtype": "float32",
    }


def config_from_deepseek(hf: dict, source: str = "config.json") -> ModelConfig:
    """Our `ModelConfig` for a DeepSeek-V3 ``config.json`` dict, or a ValueError naming the unsupported field."""
    if hf.get("model_type") != "deepseek_v3":
        hint = hf_checkpoint.model_type_hint(hf, {"llama": " (use llama.load_llama)", "gpt2": " (use gpt2.load_gpt2)"})
        raise ValueError(f"{source}: model_type is {hf.get('model_type')!r}; only DeepSeek-V3 checkpoints "
                         f"('deepseek_v3') are read here{hint}")
    hf_checkpoint.check_keys(hf, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                  "num_attention_heads"), source)
    get = {**DEFAULTS, **hf}.get
    n_layers, heads, width = hf["num_hidden_layers"], hf["num_attention_heads"], hf["hidden_size"]
    ffn = deepseek_moe.config_from_hf(hf, n_layers, source)  # ffn="swiglu", or "moe" and its fields
    if hf.get("hidden_act", "silu") not in ("silu", "swish"):
        raise ValueError(f"{source}: hidden_act={hf['hidden_act']!r} is not supported; SwiGLU here uses 'silu'")
    if hf.get("attention_bias", False):
        raise ValueError(f"{source}: attention_bias=true is not supported (MLA here has no biases)")
    if hf.get("num_key_value_heads", heads) not in (heads, None):
        raise ValueError(f"{source}: num_key_value_heads={hf['num_key_value_heads']} differs from "
                         f"num_attention_heads={heads}; MLA gives every head its own key and value")
    d_head = width // heads if isinstance(width, int) and isinstance(heads, int) and heads > 0 else None
    for key in ("qk_nope_head_dim", "v_head_dim"):
        if get(key) != d_head or width % heads:
            raise ValueError(f"{source}: {key}={get(key)} is not hidden_size / num_attention_heads "
                             f"({width} / {heads}); here a head's content and value widths are both d_head")
    if not (isinstance(get("qk_rope_head_dim"), int) and get("qk_rope_head_dim") > 0):
        raise ValueError(f"{source}: qk_rope_head_dim={get('qk_rope_head_dim')!r} must be a positive even int "
                         "(the decoupled RoPE channel)")
    eps = hf_checkpoint.number(hf, "rms_norm_eps", LATENT_EPS, source)
    if eps != LATENT_EPS:
        raise ValueError(f"{source}: rms_norm_eps={eps} is not supported; DeepSeek-V3's latent norms use a fixed "
                         f"{LATENT_EPS} and ours share one epsilon, so only rms_norm_eps={LATENT_EPS} is exact")
    if not isinstance(get("rope_interleave"), bool):
        raise ValueError(f"{source}: rope_interleave={get('rope_interleave')!r} must be true or false")
    rope_base = hf_checkpoint.rope_base_of(hf, source)  # these two raise errors naming the file themselves
    init_std = hf_checkpoint.number(hf, "initializer_range", 0.02, source)
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"], context_length=hf.get("max_position_embeddings", 4096), d_model=width,
            n_layers=n_layers, n_heads=heads, d_ff=hf["intermediate_size"], attention="mla",
            positional="rope", rope_style="interleaved" if get("rope_interleave") else "half",
            rope_base=rope_base, d_latent=get("kv_lora_rank"),
            d_latent_q=get("q_lora_rank"), d_rope=get("qk_rope_head_dim"), **ffn, norm="rmsnorm",
            tie_embeddings=hf.get("tie_word_embeddings", False), bias=False, norm_eps=eps, init_std=init_std)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from None


# --------------------------------------------------------------------------- tensors
def params_from_deepseek(tensors: dict, config: ModelConfig, source: str = "checkpoint") -> dict:
    """Our nested parameter dict from DeepSeek-V3-named tensors, following `TABLE`, every shape checked."""
    tensors = dict(tensors)
    small, template = _miniature(config)
    names = set(_fused(template, small))
    table_rows = list(hf_checkpoint.rows(_table(config), _sizes(config), config.n_layers, names))
    deepseek_moe.fill_empty_shared(tensors, config)
    fused = hf_checkpoint.import_tensors(table_rows, tensors, hf_checkpoint.TRANSFORMS, source)
    if config.tie_embeddings:
        hf_checkpoint.check_tied_copy(tensors, TIED_HEAD, fused["embed.W_E"], source)
    hf_checkpoint.check_no_extra(tensors, source, "is this a DeepSeek-V3 language model whose config.json "
                                 f"(q_lora_rank, first_k_dense_replace, n_routed_experts, tie_word_embeddings="
                                 f"{config.tie_embeddings}) matches its weights?")
    if names != set(fused):  # the table must name every parameter the model has
        raise ValueError(f"internal: the DeepSeek-V3 table does not match the model ({sorted(names ^ set(fused))})")
    flat = deepseek_moe.stack_experts({k: v for k, v in fused.items() if ".attn." not in k}, config)
    for i in range(config.n_layers):
        prefix = f"blocks.{i}.attn."
        packed = {k[len(prefix):]: v for k, v in fused.items() if k.startswith(prefix)}
        for name, value in mla_layout.from_deepseek_layout(packed, config).items():
            flat[prefix + name] = np.ascontiguousarray(value, dtype=np.float32)
    return unflatten_like(flat, template)


def params_to_deepseek(params: dict, config: ModelConfig) -> dict[str, np.ndarray]:
    """DeepSeek-V3-named float32 tensors from our parameters, following `TABLE`."""
    check_deepseek_compatible(config)
    small, template = _miniature(config)
    if set(flatten(params)) != set(flatten(template)):
        raise ValueError(f"the parameters do not match the config (differing names: "
                         f"{sorted(set(flatten(params)) ^ set(flatten(template)))[:5]}); were they built for it?")
    fused = _fused(params, config)
    table_rows = list(hf_checkpoint.rows(_table(config), _sizes(config), config.n_layers, set(fused)))
    if {r[2] for r in table_rows} != set(fused):
        raise ValueError(f"internal: the DeepSeek-V3 table misses {sorted(set(fused) - {r[2] for r in table_rows})}")
    return hf_checkpoint.export_tensors(table_rows, fused, hf_checkpoint.TRANSFORMS)


# --------------------------------------------------------------------------- the two entry points
def load_deepseek_v3(path: PathLike) -> GPT:
    """Build a `GPT` from a DeepSeek-V3-format checkpoint directory (dense and mixture-of-experts layers).

    Raises:
        ValueError: naming the file and what is wrong: a missing file, an unsupported
            field, a missing, unexpected or
            wrongly shaped tensor.
    """
    hf, tensors, config_path, weights_path = hf_checkpoint.read_dir(path, "a DeepSeek-V3 checkpoint")
    config = config_from_deepseek(hf, config_path)
    return GPT(config, params=params_from_deepseek(tensors, config, weights_path))


def export_deepseek_v3(model: GPT, path: PathLike, eos_token_id: Optional[int] = None, tokenizer=None) -> Path:
    """Write ``model`` as a DeepSeek-V3 checkpoint directory (``DeepseekV3ForCausalLM.from_pretrained`` loads it).

    The directory is written as one unit by `hf_checkpoint.write_dir`: a new one appears
    whole, an existing one is replaced whole (what happens to its other files is said there).
    ``tokenizer`` (a `Tokenizer`), if given, is written with it as ``tokenizer.json``.

    Raises:
        ValueError: if the model uses a variant DeepSeek-V3 cannot express (named in the message), or
            ``path`` cannot be a checkpoint directory (a file, a missing parent).
    """
    check_deepseek_compatible(model.config)
    if eos_token_id is not None and not (isinstance(eos_token_id, int) and 0 <= eos_token_id < model.config.vocab_size):
        raise ValueError(f"eos_token_id={eos_token_id!r} must be an id of the vocabulary "
                         f"0..{model.config.vocab_size - 1}")
    tensors = params_to_deepseek(model.params, model.config)
    return hf_checkpoint.write_dir(path, config_to_deepseek(model.config, eos_token_id), tensors, tokenizer)
