"""The model configuration: one frozen, validated, JSON-serialisable dataclass with named presets.

Variants are chosen by name (``positional="rope"``, ``ffn="swiglu"``,
``norm="rmsnorm"``, ``n_kv_heads=1`` for multi-query attention). A bad value is
a ``ValueError`` that lists the valid ones; nothing is checked with ``assert``.

    >>> cfg = ModelConfig.preset("tiny")
    >>> cfg.d_model, cfg.n_heads, cfg.d_head
    (128, 4, 32)
    >>> cfg.replace(positional="rope").positional
    'rope'
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Optional

POSITIONAL = ("learned", "sinusoidal", "rope", "none")
ROPE_STYLES = ("half", "interleaved")
ATTENTION = ("mha",)  # grouped-query and multi-query attention are "mha" with n_kv_heads < n_heads
FFN = ("gelu", "swiglu")
NORM = ("layernorm", "rmsnorm")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that decides the shape and the variants of a model.

    Attributes:
        vocab_size: V, number of token ids.
        context_length: the longest sequence the model accepts (T_max).
        d_model: C, width of the residual stream.
        n_layers: number of blocks.
        n_heads: H, query heads; ``d_model`` must be divisible by it.
        n_kv_heads: G, key/value heads (None = ``n_heads``: multi-head; 1: multi-query;
            in between: grouped-query). ``n_heads`` must be divisible by it.
        d_ff: F, feed-forward hidden width (None = 4·C for GELU, 8/3·C rounded up to a
            multiple of 8 for SwiGLU, which keeps the parameter count equal).
        positional: ``"learned"`` (GPT-2), ``"sinusoidal"`` (Vaswani et al.), ``"rope"``
            (Su et al., applied to q and k inside attention) or ``"none"``.
        rope_style: ``"half"`` (rotate the two halves of a head) or ``"interleaved"``
            (rotate neighbouring pairs); the same rotation up to a permutation.
        rope_base: the RoPE frequency base (10000 in the paper).
        attention: ``"mha"``; the multi-head latent attention option comes with its own issue.
        ffn: ``"gelu"`` (GPT-2's MLP) or ``"swiglu"`` (Shazeer, 2020).
        norm: ``"layernorm"`` or ``"rmsnorm"``, applied before each sub-layer (pre-norm).
        tie_embeddings: use ``W_E`` transposed as the output head instead of a separate ``W_U``.
        bias: biases in the linear layers (GPT-2 has them).
        dropout: dropout probability in training (0 disables it).
        norm_eps: epsilon inside the norms.
        init_std: standard deviation of the initial weights.
    """

    vocab_size: int = 256
    context_length: int = 64
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: Optional[int] = None
    d_ff: Optional[int] = None
    positional: str = "learned"
    rope_style: str = "half"
    rope_base: float = 10000.0
    attention: str = "mha"
    ffn: str = "gelu"
    norm: str = "layernorm"
    tie_embeddings: bool = True
    bias: bool = True
    dropout: float = 0.0
    norm_eps: float = 1e-5
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
            _positive_int(name, getattr(self, name))
        for name in ("n_kv_heads", "d_ff"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        for name, valid in (("positional", POSITIONAL), ("rope_style", ROPE_STYLES), ("attention", ATTENTION),
                            ("ffn", FFN), ("norm", NORM)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of {', '.join(map(repr, valid))}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must be divisible by n_kv_heads={self.n_kv_heads} "
                "(each key/value head serves an equal group of query heads)"
            )
        if self.positional == "rope" and self.d_head % 2:
            raise ValueError(f"RoPE rotates pairs of dimensions, so d_head={self.d_head} must be even")
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"sinusoidal encoding pairs sin and cos, so d_model={self.d_model} must be even")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")
        for name in ("norm_eps", "init_std", "rope_base"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive number")
        for name in ("tie_embeddings", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be True or False")

    # ---------------------------------------------------------------- derived sizes
    @property
    def d_head(self) -> int:
        """D, the width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """G, the number of key/value heads actually used."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def ff_width(self) -> int:
        """F, the feed-forward hidden width actually used."""
        if self.d_ff is not None:
            return self.d_ff
        if self.ffn == "swiglu":
            return -(-(8 * self.d_model // 3) // 8) * 8
        return 4 * self.d_model

    # ---------------------------------------------------------------- presets and files
    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """A named configuration, with optional overrides (``ModelConfig.preset("tiny", ffn="swiglu")``)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; valid presets are {', '.join(map(repr, PRESETS))}")
        return cls(**{**PRESETS[name], **overrides})

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """Build from a dict (e.g. read from JSON), naming unknown keys instead of ignoring them."""
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; valid keys are {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


PRESETS: dict[str, dict] = {
    # for tests: runs a gradient check of the whole model in well under a second
    "toy": dict(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4),
    # for notebooks and the course model
    "tiny": dict(vocab_size=1024, context_length=128, d_model=128, n_layers=4, n_heads=4),
    # the largest size the benchmarks train on 2 cores
    "small": dict(vocab_size=4096, context_length=256, d_model=256, n_layers=6, n_heads=8),
}


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive int")
