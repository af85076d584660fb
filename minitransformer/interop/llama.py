"""Llama checkpoints in and out: the format most open GPU-trained models are published in.

A Llama-format checkpoint is a directory with ``config.json`` (a ``LlamaConfig``
dict) and ``model.safetensors`` (the weights under ``transformers``' Llama names),
which ``AutoModelForCausalLM.from_pretrained(dir)`` loads as ``LlamaForCausalLM``.

Llama is one combination of this package's variants: rotary positions (RoPE),
RMSNorm, the SwiGLU MLP, multi-head attention with any number of key/value heads
(grouped-query and multi-query too), biases in attention and MLP together or not
at all, and a head tied to the embedding or not. `export_llama` writes such a
model; `load_llama` reads one back; any other variant is refused with a
ValueError that names the field and what Llama supports.

    >>> import tempfile
    >>> from minitransformer.core.config import ModelConfig
    >>> cfg = ModelConfig.preset("toy", positional="rope", ffn="swiglu", norm="rmsnorm", bias=False, n_kv_heads=2)
    >>> model = GPT(cfg, seed=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = export_llama(model, folder + "/llama")
    ...     again = load_llama(folder + "/llama")
    >>> ids = np.array([[1, 2, 3]])
    >>> bool(np.array_equal(again.forward(ids), model.forward(ids)))
    True

Two things to know when moving weights into Llama's layout:

- every linear layer is transposed: we store (in, out) and compute ``x @ W``;
  ``nn.Linear`` stores (out, in);
- ``transformers``' Llama rotates the two halves of each head (dimension i with
  i + D/2, our ``rope_style="half"``). A model trained with ``"interleaved"`` RoPE
  (pairs 2i, 2i+1, as in the RoFormer paper and Meta's original code) is exported
  exactly by reordering each head's query and key rows to [even dims | odd dims]:
  pair (2i, 2i+1) becomes pair (i, i + D/2) and turns by the same angle, so every
  score q·k is unchanged. Loading with ``rope_style="interleaved"`` undoes it.
  (``transformers``' converter for Meta's original weights reorders the same way.)

Deliberately left out: RoPE scaling (``rope_type`` other than "default"),
sharded and pickled weight files, and Llama's cousins with extra options.

Reference: Touvron et al. (2023), "LLaMA: Open and Efficient Foundation Language
Models"; Su et al. (2021), "RoFormer"; the names are those of ``transformers``'
``modeling_llama.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..core import registry
from ..core.config import ROPE_STYLES, ModelConfig
from ..core.fileio import PathLike
from ..core.tree import flatten, unflatten_like
from ..model import GPT, init_params
from . import hf_checkpoint

# --------------------------------------------------------------------------- the name table
# One row per Llama tensor: its name, its shape (transformers' (out, in) for linear layers), our
# name, and how the values move. Sizes: V vocabulary, C width, F MLP width, HD = heads·head_dim,
# GD = key/value heads·head_dim. A row applies when the model has our parameter (biases only with
# bias=True; lm_head only when the head is untied).
#   "same"    the same array;   "T"   transposed ((in, out) <-> (out, in));
#   "rope_T"  transposed, and each head's dims reordered for the rotation (see `_rope_order`);
#   "rope"    a bias vector, each head's dims reordered the same way.
TABLE: list[tuple[str, str, str, str]] = [
    # transformers name                                   shape    our name                  how
    ("model.embed_tokens.weight",                         "V C",   "embed.W_E",              "same"),
    ("model.layers.{i}.input_layernorm.weight",           "C",     "blocks.{i}.ln1.w",       "same"),
    ("model.layers.{i}.self_attn.q_proj.weight",          "HD C",  "blocks.{i}.attn.W_Q",    "rope_T"),
    ("model.layers.{i}.self_attn.q_proj.bias",            "HD",    "blocks.{i}.attn.b_Q",    "rope"),
    ("model.layers.{i}.self_attn.k_proj.weight",          "GD C",  "blocks.{i}.attn.W_K",    "rope_T"),
    ("model.layers.{i}.self_attn.k_proj.bias",            "GD",    "blocks.{i}.attn.b_K",    "rope"),
    ("model.layers.{i}.self_attn.v_proj.weight",          "GD C",  "blocks.{i}.attn.W_V",    "T"),
    ("model.layers.{i}.self_attn.v_proj.bias",            "GD",    "blocks.{i}.attn.b_V",    "same"),
    ("model.layers.{i}.self_attn.o_proj.weight",          "C HD",  "blocks.{i}.attn.W_O",    "T"),
    ("model.layers.{i}.self_attn.o_proj.bias",            "C",     "blocks.{i}.attn.b_O",    "same"),
    ("model.layers.{i}.post_attention_layernorm.weight",  "C",     "blocks.{i}.ln2.w",       "same"),
    ("model.layers.{i}.mlp.gate_proj.weight",             "F C",   "blocks.{i}.mlp.W_gate",  "T"),
    ("model.layers.{i}.mlp.gate_proj.bias",               "F",     "blocks.{i}.mlp.b_gate",  "same"),
    ("model.layers.{i}.mlp.up_proj.weight",               "F C",   "blocks.{i}.mlp.W_in",    "T"),
    ("model.layers.{i}.mlp.up_proj.bias",                 "F",     "blocks.{i}.mlp.b_in",    "same"),
    ("model.layers.{i}.mlp.down_proj.weight",             "C F",   "blocks.{i}.mlp.W_out",   "T"),
    ("model.layers.{i}.mlp.down_proj.bias",               "C",     "blocks.{i}.mlp.b_out",   "same"),
    ("model.norm.weight",                                 "C",     "ln_final.w",             "same"),
    ("lm_head.weight",                                    "V C",   "unembed.W_U",            "T"),
]
TIED_HEAD = "lm_head.weight"  # tied: absent (save_pretrained omits it) or a copy of the embedding
SILU = ("silu", "swish")  # the same function under two names


def _sizes(config: ModelConfig) -> dict:
    D = config.d_head
    return {"V": config.vocab_size, "C": config.d_model, "F": config.ff_width,
            "HD": config.n_heads * D, "GD": config.kv_heads * D}


def _rope_order(D: int) -> np.ndarray:
    """Dims of one head in Llama's order: [0, 2, 4, ..., 1, 3, 5, ...] (interleaved -> halves)."""
    return np.concatenate([np.arange(0, D, 2), np.arange(1, D, 2)])  # (D,)


def _transforms(config: ModelConfig) -> dict:
    """`hf_checkpoint.TRANSFORMS` plus the RoPE reordering, which depends on head width and style."""
    D = config.d_head
    order = _rope_order(D) if config.rope_style == "interleaved" else np.arange(D)
    back = np.argsort(order)

    def reorder(a, idx):  # a (..., heads·D): permute the dims inside every head
        return a.reshape(*a.shape[:-1], -1, D)[..., idx].reshape(a.shape)  # (..., n, D) -> (..., n·D)

    return {**hf_checkpoint.TRANSFORMS,
            "rope_T": (lambda a: reorder(a, order).T, lambda a: reorder(a.T, back)),  # (C, n·D) <-> (n·D, C)
            "rope": (lambda a: reorder(a, order), lambda a: reorder(a, back))}  # (n·D,)


def _names(config: ModelConfig) -> set:
    """Our flat parameter names for ``config``, from a miniature of it (sizes tiny: instant to build)."""
    small = config.replace(vocab_size=1, context_length=1, d_model=2 * config.n_heads, d_ff=1)
    return set(flatten(init_params(small, np.random.default_rng(0))))


# --------------------------------------------------------------------------- config.json
def check_llama_compatible(config: ModelConfig) -> None:
    """Raise a ValueError naming every field of ``config`` that a Llama checkpoint cannot express."""
    problems = []

    def own(kind, name):  # a student's registered variant: its weights have no Llama names
        return "" if registry.get(kind, name).builtin else ", a variant registered outside the library"

    if config.positional != "rope":
        problems.append(f"positional={config.positional!r}{own('positional', config.positional)} "
                        "(Llama supports only 'rope': rotary positions inside attention)")
    if config.attention != "mha":
        hint = "; write MLA with deepseek.export_deepseek_v3" if config.attention == "mla" else ""
        problems.append(f"attention={config.attention!r}{own('attention', config.attention)} (Llama supports "
                        f"only 'mha': multi-head, grouped-query or multi-query attention{hint})")
    if config.ffn != "swiglu":
        problems.append(f"ffn={config.ffn!r}{own('ffn', config.ffn)} (Llama supports only 'swiglu')")
    if config.norm != "rmsnorm":
        problems.append(f"norm={config.norm!r} (Llama supports only 'rmsnorm')")
    if problems:
        raise ValueError("this model cannot be written as a Llama checkpoint: " + "; ".join(problems) + ".")


def config_to_llama(config: ModelConfig, eos_token_id: Optional[int] = None) -> dict:
    """The ``config.json`` dict of a Llama with ``config``'s sizes (after `check_llama_compatible`)."""
    check_llama_compatible(config)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.ff_width,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.d_head,
        "hidden_act": "silu",
        "max_position_embeddings": config.context_length,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_base,  # older transformers read this ...
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_base},  # ... newer ones this
        "attention_bias": config.bias,  # one switch of ours sets both of Llama's
        "mlp_bias": config.bias,
        "attention_dropout": 0.0,
        "tie_word_embeddings": config.tie_embeddings,
        "initializer_range": config.init_std,
        "bos_token_id": eos_token_id,  # note: LlamaConfig's defaults (1 and 2) are SentencePiece ids;
        "eos_token_id": eos_token_id,  # written explicitly so our vocabulary gets no stray ids
        "torch_dtype": "float32",
    }


def config_from_llama(hf: dict, source: str = "config.json", rope_style: str = "half") -> ModelConfig:
    """Our `ModelConfig` for a Llama ``config.json`` dict, or a ValueError naming the unsupported field."""
    if hf.get("model_type") != "llama":
        hint = hf_checkpoint.model_type_hint(hf, {"deepseek_v3": " (use deepseek.load_deepseek_v3)",
                                                  "gpt2": " (use gpt2.load_gpt2)"})
        raise ValueError(f"{source}: model_type is {hf.get('model_type')!r}; only Llama checkpoints ('llama') "
                         f"are read here{hint}")
    hf_checkpoint.check_keys(hf, ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                  "num_attention_heads"), source)
    if rope_style not in ROPE_STYLES:
        raise ValueError(f"rope_style={rope_style!r} is not valid; choose one of {', '.join(map(repr, ROPE_STYLES))}")
    if hf.get("hidden_act", "silu") not in SILU:
        raise ValueError(f"{source}: hidden_act={hf['hidden_act']!r} is not supported; SwiGLU here uses 'silu'")
    heads, width = hf["num_attention_heads"], hf["hidden_size"]
    head_dim = hf.get("head_dim")
    if head_dim is not None and (not isinstance(heads, int) or not isinstance(head_dim, int)
                                 or heads * head_dim != width):
        raise ValueError(f"{source}: head_dim={head_dim} with num_attention_heads={heads} is not "
                         f"hidden_size={width}; here a head is always hidden_size / num_attention_heads wide")
    bias = hf.get("attention_bias", False)
    kv = hf.get("num_key_value_heads") or heads  # absent or null: one key/value head per query head
    if hf.get("mlp_bias", False) != bias:
        raise ValueError(f"{source}: attention_bias={bias!r} and mlp_bias={hf.get('mlp_bias')!r} differ; here "
                         "one switch (bias) gives both attention and MLP biases or neither")
    rope_base = hf_checkpoint.rope_base_of(hf, source)  # these three raise errors naming the file themselves
    eps = hf_checkpoint.number(hf, "rms_norm_eps", 1e-6, source)
    init_std = hf_checkpoint.number(hf, "initializer_range", 0.02, source)
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"], context_length=hf.get("max_position_embeddings", 2048), d_model=width,
            n_layers=hf["num_hidden_layers"], n_heads=heads, n_kv_heads=kv if kv != heads else None,
            d_ff=hf["intermediate_size"], positional="rope", rope_style=rope_style, rope_base=rope_base,
            attention="mha", ffn="swiglu", norm="rmsnorm",
            tie_embeddings=hf.get("tie_word_embeddings", False),  # note: LlamaConfig's default is untied
            bias=bias, norm_eps=eps, init_std=init_std)
    except (TypeError, ValueError) as exc:  # a size of the wrong type or value, named by ModelConfig
        raise ValueError(f"{source}: {exc}") from None


# --------------------------------------------------------------------------- tensors
def params_from_llama(tensors: dict, config: ModelConfig, source: str = "checkpoint") -> dict:
    """Our nested parameter dict from Llama-named tensors, following `TABLE`, every shape checked."""
    tensors = dict(tensors)
    names = _names(config)
    table_rows = list(hf_checkpoint.rows(TABLE, _sizes(config), config.n_layers, names))
    flat = hf_checkpoint.import_tensors(table_rows, tensors, _transforms(config), source)
    if config.tie_embeddings:
        hf_checkpoint.check_tied_copy(tensors, TIED_HEAD, flat["embed.W_E"], source)
    hf_checkpoint.check_no_extra(tensors, source, "is this a Llama language model whose config.json "
                                 f"(attention_bias={config.bias}, tie_word_embeddings={config.tie_embeddings}) "
                                 "matches its weights?")
    if names != set(flat):  # the table must name every parameter the model has
        raise ValueError(f"internal: the Llama table does not match the model's parameters ({sorted(names ^ set(flat))})")
    small = config.replace(vocab_size=1, context_length=1, d_model=2 * config.n_heads, d_ff=1)
    return unflatten_like(flat, init_params(small, np.random.default_rng(0)))


def params_to_llama(params: dict, config: ModelConfig) -> dict[str, np.ndarray]:
    """Llama-named float32 tensors from our parameters, following `TABLE`."""
    check_llama_compatible(config)
    flat = flatten(params)
    if set(flat) != _names(config):
        raise ValueError(f"the parameters do not match the config (differing names: "
                         f"{sorted(set(flat) ^ _names(config))[:5]}); were they built for this config?")
    table_rows = list(hf_checkpoint.rows(TABLE, _sizes(config), config.n_layers, set(flat)))
    return hf_checkpoint.export_tensors(table_rows, flat, _transforms(config))


# --------------------------------------------------------------------------- the two entry points
def load_llama(path: PathLike, rope_style: str = "half") -> GPT:
    """Build a `GPT` from a Llama-format checkpoint directory (``config.json`` + ``model.safetensors``).

    Args:
        rope_style: how our model should rotate: ``"half"`` reads the weights as they are
            (Llama's own layout); ``"interleaved"`` reorders each head's query and key dims
            back (exact for a checkpoint `export_llama` wrote from an interleaved model).

    Raises:
        ValueError: naming the file and what is wrong: a missing file, an unsupported
            field, a missing, unexpected or wrongly shaped tensor.
    """
    hf, tensors, config_path, weights_path = hf_checkpoint.read_dir(path, "a Llama checkpoint")
    config = config_from_llama(hf, config_path, rope_style)
    return GPT(config, params=params_from_llama(tensors, config, weights_path))


def export_llama(model: GPT, path: PathLike, eos_token_id: Optional[int] = None, tokenizer=None) -> Path:
    """Write ``model`` as a Llama checkpoint directory (``LlamaForCausalLM.from_pretrained`` loads it).

    The directory is written as one unit by `hf_checkpoint.write_dir`: a new one appears
    whole, an existing one is replaced whole (what happens to its other files is said there).

    Args:
        eos_token_id: the id of the end-of-text token, written as ``bos_token_id`` and
            ``eos_token_id`` so that ``generate`` stops at it.
        tokenizer: a `Tokenizer`, also written, as the ``tokenizer.json`` that ``transformers`` reads.

    Raises:
        ValueError: if the model uses a variant Llama cannot express (named in the message), or
            ``path`` cannot be a checkpoint directory (a file, a missing parent).
    """
    check_llama_compatible(model.config)
    if eos_token_id is not None and not (isinstance(eos_token_id, int) and 0 <= eos_token_id < model.config.vocab_size):
        raise ValueError(f"eos_token_id={eos_token_id!r} must be an id of the vocabulary "
                         f"0..{model.config.vocab_size - 1}")
    tensors = params_to_llama(model.params, model.config)
    return hf_checkpoint.write_dir(path, config_to_llama(model.config, eos_token_id), tensors, tokenizer)
