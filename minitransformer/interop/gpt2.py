"""GPT-2 checkpoints in and out: the bridge to Hugging Face ``transformers`` and PyTorch.

A GPT-2-format checkpoint is a directory with two files:

- ``config.json``: the sizes (``n_embd``, ``n_layer``, ``n_head``, ``n_positions``,
  ``vocab_size``, ...), as ``transformers.GPT2Config`` writes them;
- ``model.safetensors``: the weights under ``transformers``' GPT-2 names (read
  and written by `safetensors_io`, with numpy alone: no PyTorch needed).

GPT-2 is exactly one combination of this package's variants: learned positions,
LayerNorm, the tanh-GELU MLP, multi-head attention with biases, and a head tied
to the embedding. `load_gpt2` builds that model from a checkpoint; `export_gpt2`
writes one that ``GPT2LMHeadModel.from_pretrained(dir)`` loads, and refuses
(with a ValueError naming the variant) a model that GPT-2 cannot express.

    >>> import tempfile
    >>> from minitransformer.core.config import ModelConfig
    >>> model = GPT(ModelConfig.preset("toy"), seed=0)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     _ = export_gpt2(model, folder)
    ...     again = load_gpt2(folder)
    >>> ids = np.array([[1, 2, 3]])
    >>> bool(np.array_equal(again.forward(ids), model.forward(ids)))
    True

The one thing to know when moving weights between libraries is how each stores a
linear layer. Ours stores ``W`` as (in, out) and computes ``x @ W``. GPT-2's
``Conv1D`` (a linear layer despite its name) also stores (in, out), so no weight
is transposed here. PyTorch's ``nn.Linear`` stores (out, in) and computes
``x @ W.T``: copying GPT-2 weights into ``nn.Linear`` layers (as minGPT and
nanoGPT do) needs ``.T`` on exactly the four Conv1D weights of each block.

Deliberately left out: pickled ``pytorch_model.bin`` files (they run code when
loaded; convert them with ``transformers`` first), TensorFlow checkpoints, and
GPT-2's extra options (``scale_attn_by_inverse_layer_idx``, cross-attention).

Reference: Radford et al. (2019), "Language Models are Unsupervised Multitask
Learners"; the names are those of ``transformers``' ``modeling_gpt2.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..core.config import ModelConfig
from ..core.fileio import PathLike
from ..core.tree import flatten, unflatten_like
from ..model import GPT, init_params
from . import hf_checkpoint

# --------------------------------------------------------------------------- the name table
# One row per GPT-2 tensor: its name, its shape, our name(s) for it, and how the values map.
# "{i}" is the block index; shapes use V vocabulary, T context length, C width, F MLP width.
#   "same"    the same array, same shape, no transpose (Conv1D and ours are both (in, out));
#   "split3"  GPT-2 fuses q, k and v into one Conv1D: c_attn = [W_Q | W_K | W_V] along its
#             last axis, (C, 3C) for the weight and (3C,) for the bias; we keep three arrays.
# GPT-2's head has no row: lm_head.weight *is* wte.weight (tied), so checkpoints either omit
# it or store a copy, and our tied head reads W_E too.
TABLE: list[tuple[str, str, tuple[str, ...], str]] = [
    # GPT-2 name                   shape    our name(s)                                             how
    ("wte.weight",                 "V C",   ("embed.W_E",),                                         "same"),
    ("wpe.weight",                 "T C",   ("pos.W_pos",),                                         "same"),
    ("h.{i}.ln_1.weight",          "C",     ("blocks.{i}.ln1.w",),                                  "same"),
    ("h.{i}.ln_1.bias",            "C",     ("blocks.{i}.ln1.b",),                                  "same"),
    ("h.{i}.attn.c_attn.weight",   "C 3C",  ("blocks.{i}.attn.W_Q", "blocks.{i}.attn.W_K",
                                             "blocks.{i}.attn.W_V"),                                "split3"),
    ("h.{i}.attn.c_attn.bias",     "3C",    ("blocks.{i}.attn.b_Q", "blocks.{i}.attn.b_K",
                                             "blocks.{i}.attn.b_V"),                                "split3"),
    ("h.{i}.attn.c_proj.weight",   "C C",   ("blocks.{i}.attn.W_O",),                               "same"),
    ("h.{i}.attn.c_proj.bias",     "C",     ("blocks.{i}.attn.b_O",),                               "same"),
    ("h.{i}.ln_2.weight",          "C",     ("blocks.{i}.ln2.w",),                                  "same"),
    ("h.{i}.ln_2.bias",            "C",     ("blocks.{i}.ln2.b",),                                  "same"),
    ("h.{i}.mlp.c_fc.weight",      "C F",   ("blocks.{i}.mlp.W_in",),                               "same"),
    ("h.{i}.mlp.c_fc.bias",        "F",     ("blocks.{i}.mlp.b_in",),                               "same"),
    ("h.{i}.mlp.c_proj.weight",    "F C",   ("blocks.{i}.mlp.W_out",),                              "same"),
    ("h.{i}.mlp.c_proj.bias",      "C",     ("blocks.{i}.mlp.b_out",),                              "same"),
    ("ln_f.weight",                "C",     ("ln_final.w",),                                        "same"),
    ("ln_f.bias",                  "C",     ("ln_final.b",),                                        "same"),
]

PREFIX = "transformer."  # GPT2LMHeadModel saves its GPT2Model under this prefix; GPT2Model saves none
# Tensors some checkpoints hold that are not weights: the causal-mask buffers of older
# transformers versions ("attn.bias" (1, 1, T, T) and "attn.masked_bias"); ignored.
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
TIED_HEAD = "lm_head.weight"

# GPT-2's activation names: "gelu_new" (the default) and "gelu_pytorch_tanh" are both
# the tanh approximation our MLP computes; plain "gelu" is the exact erf form.
TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")


def _rows(config: ModelConfig):
    """The table for ``config``: ``(gpt2_name, shape, our_names, how)`` with ``{i}`` and the sizes filled in."""
    sizes = {"V": config.vocab_size, "T": config.context_length, "C": config.d_model, "F": config.ff_width}
    for gpt2, shape, ours, how in TABLE:
        dims = tuple(3 * sizes[d[1]] if d.startswith("3") else sizes[d] for d in shape.split())
        for i in (range(config.n_layers) if "{i}" in gpt2 else [None]):
            yield gpt2.format(i=i), dims, tuple(n.format(i=i) for n in ours), how


def _template(config: ModelConfig) -> dict:
    """The nested structure of ``config``'s parameters, from a miniature of it (sizes 1: instant to build)."""
    small = config.replace(vocab_size=1, context_length=1, d_model=config.n_heads, d_ff=1)
    return init_params(small, np.random.default_rng(0))


# --------------------------------------------------------------------------- config.json
def config_from_gpt2(hf: dict, source: str = "config.json") -> ModelConfig:
    """Our `ModelConfig` for a GPT-2 ``config.json`` dict, or a ValueError naming the unsupported option."""
    def bad(what: str) -> ValueError:
        return ValueError(f"{source}: {what}")

    if not isinstance(hf, dict):
        raise bad(f"must hold a JSON object, got {type(hf).__name__}")
    if hf.get("model_type", "gpt2") != "gpt2":
        raise bad(f"model_type is {hf.get('model_type')!r}; only GPT-2 checkpoints ('gpt2') can be loaded")
    missing = [k for k in ("vocab_size", "n_embd", "n_layer", "n_head") if k not in hf]
    if missing:
        raise bad(f"missing keys {missing}")
    act = hf.get("activation_function", "gelu_new")
    if act not in TANH_GELU:
        raise bad(f"activation_function={act!r} is not supported; the MLP computes the tanh GELU "
                  f"({' or '.join(map(repr, TANH_GELU))})")
    unsupported = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                   "add_cross_attention": False, "tie_word_embeddings": True}
    for key, value in unsupported.items():
        if hf.get(key, value) != value:
            raise bad(f"{key}={hf[key]!r} is not supported (only {value!r}, as in GPT-2)")
    eps, init_std, dropout = (hf_checkpoint.number(hf, key, default, source) for key, default in
                              (("layer_norm_epsilon", 1e-5), ("initializer_range", 0.02), ("resid_pdrop", 0.0)))
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"], context_length=hf.get("n_positions", hf.get("n_ctx", 1024)),
            d_model=hf["n_embd"], n_layers=hf["n_layer"], n_heads=hf["n_head"], d_ff=hf.get("n_inner"),
            positional="learned", norm="layernorm", ffn="gelu", attention="mha", tie_embeddings=True, bias=True,
            norm_eps=eps, init_std=init_std, dropout=dropout,  # note: dropout is for training; no attention dropout
        )
    except (TypeError, ValueError) as exc:  # a size of the wrong type or value, named by ModelConfig
        raise bad(str(exc)) from None


def config_to_gpt2(config: ModelConfig, eos_token_id: Optional[int] = None) -> dict:
    """The ``config.json`` dict of a GPT-2 with ``config``'s sizes (after `check_gpt2_compatible`)."""
    check_gpt2_compatible(config)
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.context_length,
        "n_embd": config.d_model,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": config.d_ff,  # None: 4 * n_embd, as ours
        "activation_function": "gelu_new",  # the tanh approximation, as ours
        "layer_norm_epsilon": config.norm_eps,
        "initializer_range": config.init_std,
        "resid_pdrop": config.dropout, "embd_pdrop": config.dropout, "attn_pdrop": 0.0,
        "scale_attn_weights": True,
        "tie_word_embeddings": True,
        "bos_token_id": eos_token_id,  # note: GPT2Config's default is 50256, GPT-2's <|endoftext|>;
        "eos_token_id": eos_token_id,  # written explicitly so a small vocabulary gets no stray id
        "dtype": "float32",
    }


def check_gpt2_compatible(config: ModelConfig) -> None:
    """Raise a ValueError naming every variant of ``config`` that a GPT-2 checkpoint cannot express."""
    problems = []
    if config.positional != "learned":
        problems.append(f"positional={config.positional!r} (GPT-2 has learned positions)")
    if config.attention != "mha":
        problems.append(f"attention={config.attention!r} (GPT-2 has plain multi-head attention)")
    if config.kv_heads != config.n_heads:
        kind = "multi-query" if config.kv_heads == 1 else "grouped-query"
        problems.append(f"n_kv_heads={config.n_kv_heads} ({kind} attention; GPT-2 has one key/value head "
                        "per query head)")
    if config.ffn != "gelu":
        problems.append(f"ffn={config.ffn!r} (GPT-2 has the GELU MLP)")
    if config.norm != "layernorm":
        problems.append(f"norm={config.norm!r} (GPT-2 has LayerNorm)")
    if not config.tie_embeddings:
        problems.append("tie_embeddings=False (GPT-2's output head is the embedding matrix)")
    if not config.bias:
        problems.append("bias=False (GPT-2's linear layers have biases)")
    if problems:
        raise ValueError("this model cannot be written as a GPT-2 checkpoint: " + "; ".join(problems)
                         + ". Only the GPT-2 combination of variants (ModelConfig defaults) can be exported.")


# --------------------------------------------------------------------------- loading
def load_gpt2(path: PathLike) -> GPT:
    """Build a `GPT` from a GPT-2-format checkpoint directory (``config.json`` + ``model.safetensors``).

    Works for checkpoints written by ``GPT2LMHeadModel.save_pretrained`` (names under
    ``transformer.``) or by ``GPT2Model`` (no prefix), by `export_gpt2`, and for the
    ``gpt2`` snapshot in a Hugging Face cache. Weights stored as float16/bfloat16 are
    widened to float32.

    Raises:
        ValueError: naming the file and what is wrong: a missing file, an unsupported
            option, a missing, unexpected or wrongly shaped tensor.
    """
    hf_config, tensors, config_path, weights_path = hf_checkpoint.read_dir(path, "a GPT-2 checkpoint")
    config = config_from_gpt2(hf_config, config_path)
    params = params_from_gpt2(tensors, config, weights_path)
    return GPT(config, params=params)


def params_from_gpt2(tensors: dict[str, np.ndarray], config: ModelConfig, source: str = "checkpoint") -> dict:
    """Our nested parameter dict from GPT-2-named tensors, following `TABLE`, every shape checked."""
    tensors = {(k[len(PREFIX):] if k.startswith(PREFIX) else k): v for k, v in tensors.items()}
    flat: dict[str, np.ndarray] = {}
    for gpt2, shape, ours, how in _rows(config):
        if gpt2 not in tensors:
            raise ValueError(f"{source}: tensor {gpt2!r} is missing (a GPT-2 with {config.n_layers} layers "
                             f"needs it for {', '.join(ours)})")
        value = tensors.pop(gpt2)
        if value.shape != shape:
            raise ValueError(f"{source}: tensor {gpt2!r} has shape {tuple(value.shape)} but config.json's "
                             f"sizes need {shape}")
        if value.dtype.kind != "f":
            raise ValueError(f"{source}: tensor {gpt2!r} has dtype {value.dtype}; weights must be floating point")
        parts = np.split(value, 3, axis=-1) if how == "split3" else [value]  # c_attn -> q, k, v
        for name, part in zip(ours, parts):
            flat[name] = np.ascontiguousarray(part, dtype=np.float32)
    if TIED_HEAD in tensors:  # a stored copy of the tied head must be the embedding
        head = tensors.pop(TIED_HEAD)
        if head.shape != flat["embed.W_E"].shape or not np.array_equal(head.astype(np.float32), flat["embed.W_E"]):
            raise ValueError(f"{source}: {TIED_HEAD!r} differs from wte.weight, so the head is not tied; "
                             "an untied head is not supported for GPT-2 checkpoints")
    extra = sorted(k for k in tensors if not k.endswith(IGNORED_SUFFIXES))
    if extra:
        raise ValueError(f"{source}: unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''}; "
                         "is this a GPT-2 language model checkpoint with the sizes of its config.json?")
    template = _template(config)
    if set(flatten(template)) != set(flat):  # the table must name every parameter the model has
        raise ValueError(f"internal: the GPT-2 table does not match the model's parameters "
                         f"({sorted(set(flatten(template)) ^ set(flat))})")
    return unflatten_like(flat, template)


# --------------------------------------------------------------------------- exporting
def params_to_gpt2(params: dict, config: ModelConfig) -> dict[str, np.ndarray]:
    """GPT-2-named float32 tensors (with the ``transformer.`` prefix) from our parameters, following `TABLE`."""
    check_gpt2_compatible(config)
    flat = flatten(params)
    out = {}
    for gpt2, shape, ours, how in _rows(config):
        missing = [n for n in ours if n not in flat]
        if missing:
            raise ValueError(f"parameter {missing[0]!r} is missing; were these params built for this config?")
        parts = [np.asarray(flat[n], dtype=np.float32) for n in ours]
        value = np.concatenate(parts, axis=-1) if how == "split3" else parts[0]  # q, k, v -> c_attn
        if value.shape != shape:
            raise ValueError(f"parameter {ours[0]!r} has shape {parts[0].shape}, which does not match the config "
                             f"(GPT-2's {gpt2!r} must be {shape})")
        out[PREFIX + gpt2] = value
    return out


def export_gpt2(model: GPT, path: PathLike, eos_token_id: Optional[int] = None, tokenizer=None) -> Path:
    """Write ``model`` as a GPT-2 checkpoint directory that ``transformers`` loads.

    ``GPT2LMHeadModel.from_pretrained(path)`` then gives the same logits and the same
    greedy continuations as ``model``. The directory is written as one unit by
    `hf_checkpoint.write_dir`: a new one appears whole, an existing one is replaced
    whole (what happens to its other files is said there); its parent must exist.

    Args:
        eos_token_id: the id of the end-of-text token (e.g. ``tok.special_tokens["<|endoftext|>"]``),
            written as ``bos_token_id``/``eos_token_id`` so that ``generate`` stops at it.
        tokenizer: a `Tokenizer`, also written, as the ``tokenizer.json`` that ``transformers`` reads.

    Raises:
        ValueError: if the model uses a variant GPT-2 cannot express (named in the message), or
            ``path`` cannot be a checkpoint directory (a file, a missing parent).
    """
    check_gpt2_compatible(model.config)
    if eos_token_id is not None and not (isinstance(eos_token_id, int) and 0 <= eos_token_id < model.config.vocab_size):
        raise ValueError(f"eos_token_id={eos_token_id!r} must be an id of the vocabulary "
                         f"0..{model.config.vocab_size - 1}")
    tensors = params_to_gpt2(model.params, model.config)
    return hf_checkpoint.write_dir(path, config_to_gpt2(model.config, eos_token_id), tensors, tokenizer)
