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
import functools
import json
import math
from dataclasses import dataclass
from typing import Optional

from . import registry
from .values import is_number

ROPE_STYLES = ("half", "interleaved")
NORM = ("layernorm", "rmsnorm")
EXPERT_FFN = ("swiglu", "gelu")  # the MLP inside each expert of ffn="moe"
DENSE_FFN = ("gelu", "swiglu")  # the MLP of the first dense blocks of ffn="moe"
MOE_IMPL = ("fast", "reference")


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
        attention: ``"mha"`` (multi-, grouped- or multi-query attention) or ``"mla"``
            (DeepSeek-V2's Multi-Head Latent Attention, `attention.mla`; bias-free, so
            ``bias`` then applies to the other layers only).
        attention_impl: ``"fast"`` (the variant's own code) or ``"reference"`` (its reference
            path: the equations written out, tested equal, e.g. `attention.mha_reference`).
            Same parameters, caches and results; the reference is slower and easier to read.
            The attention variant is still named by ``attention``, so everything that asks
            ``attention == "mla"`` holds for both.
        d_latent: MLA only: d_c, the width of the cached key/value latent c_KV
            (None = 4·d_head, DeepSeek-V2's ratio).
        d_latent_q: MLA only: d_c', the width of the query latent c_Q; None or 0 = no
            query compression (a direct ``W_Q``, as in DeepSeek-V2-Lite).
        d_rope: MLA only: d_R, the width of the decoupled RoPE channel (per-head q_R and
            the one shared k_R). Even; set (> 0) only with ``positional="rope"``, and
            None means d_head/2 with RoPE and 0 without.
        latent_norm: MLA only: RMSNorm on the latents c_KV and c_Q (on, as in DeepSeek).
        softmax_scale_mult: MLA only: multiplies the softmax scale 1/sqrt(d_head + d_R)
            (the hook where YaRN's mscale² would go; 1.0 = none).
        ffn: ``"gelu"`` (GPT-2's MLP), ``"swiglu"`` (Shazeer, 2020), ``"moe"`` (a mixture of
            experts with DeepSeek-V3's routing, `feedforward.moe`; fields below), or ``"none"``
            (no MLP: an attention-only model).
        norm: ``"layernorm"`` or ``"rmsnorm"``, applied before each sub-layer (pre-norm).
        tie_embeddings: use ``W_E`` transposed as the output head instead of a separate ``W_U``.
        bias: biases in the linear layers (GPT-2 has them).
        dropout: dropout probability in training (0 disables it).
        norm_eps: epsilon inside the norms.
        init_std: standard deviation of the initial weights.

    Mixture of experts (``ffn="moe"``); every field below must keep its default unless
    ``ffn="moe"``:

        n_experts: E, routed experts per MoE layer.
        n_shared_experts: S, experts every token goes through (0 = none).
        experts_per_token: K, routed experts each token uses (top-K of the router).
        n_expert_groups: experts are split into this many equal groups (1 = no group limit).
        groups_per_token: a token chooses its K experts inside at most this many groups.
        d_expert: F_e, hidden width of one expert (None: a dense SwiGLU's width divided by
            K + S, rounded up to a multiple of 8, so the active size matches a dense layer).
        expert_ffn: the MLP inside each expert, ``"swiglu"`` (DeepSeek) or ``"gelu"``.
        routed_scaling: multiplies the gate values (DeepSeek-V3's routed_scaling_factor).
        normalize_gates: gates are the selected scores divided by their sum (norm_topk_prob).
        first_dense_layers: the first blocks keep a dense MLP (first_k_dense_replace).
        dense_ffn: the MLP of those dense blocks (``"swiglu"`` or ``"gelu"``, width ``d_ff``).
        balance_speed: gamma, the step of the auxiliary-loss-free bias update per training step.
        balance_loss: alpha, weight of the sequence-wise balance loss (0 = off).
        moe_impl: ``"fast"`` (tokens sorted by expert) or ``"reference"`` (a loop with masks).
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
    attention_impl: str = "fast"
    ffn: str = "gelu"
    norm: str = "layernorm"
    tie_embeddings: bool = True
    bias: bool = True
    dropout: float = 0.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    d_latent: Optional[int] = None
    d_latent_q: Optional[int] = None
    d_rope: Optional[int] = None
    latent_norm: bool = True
    softmax_scale_mult: float = 1.0
    n_experts: int = 8
    n_shared_experts: int = 1
    experts_per_token: int = 2
    n_expert_groups: int = 1
    groups_per_token: int = 1
    d_expert: Optional[int] = None
    expert_ffn: str = "swiglu"
    routed_scaling: float = 1.0
    normalize_gates: bool = True
    first_dense_layers: int = 0
    dense_ffn: str = "swiglu"
    balance_speed: float = 0.001
    balance_loss: float = 0.0
    moe_impl: str = "fast"

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads"):
            _positive_int(name, getattr(self, name))
        for name in ("n_kv_heads", "d_ff"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        for name in ("positional", "attention", "ffn"):
            valid = registry.names(name)
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of {', '.join(map(repr, valid))} "
                                 f"(or register your own with minitransformer.core.registry.register_{name})")
        for name, valid in (("rope_style", ROPE_STYLES), ("norm", NORM), ("attention_impl", registry.IMPLS)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of {', '.join(map(repr, valid))}")
        if self.attention_impl == "reference":
            registry.reference_for("attention", self.attention)  # a ValueError naming those that have one
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must be divisible by n_kv_heads={self.n_kv_heads} "
                "(each key/value head serves an equal group of query heads)"
            )
        if registry.is_rotary(self) and self.d_head % 2:
            raise ValueError(f"RoPE rotates pairs of dimensions, so d_head={self.d_head} must be even")
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"sinusoidal encoding pairs sin and cos, so d_model={self.d_model} must be even")
        if not (is_number(self.dropout) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout={self.dropout!r} must be a number in [0, 1)")
        for name in ("norm_eps", "init_std", "rope_base"):
            if not (is_number(getattr(self, name)) and 0 < getattr(self, name) < math.inf):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a finite positive number")
        for name in ("tie_embeddings", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r} must be True or False")
        self._check_mla()
        self._check_moe()

    def _check_mla(self) -> None:
        """The Multi-Head Latent Attention fields: meaningful only with ``attention="mla"``."""
        if not isinstance(self.latent_norm, bool):
            raise ValueError(f"latent_norm={self.latent_norm!r} must be True or False")
        m = self.softmax_scale_mult
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0:
            raise ValueError(f"softmax_scale_mult={m!r} must be a positive number (1.0 = the plain 1/sqrt(d) scale)")
        if self.attention != "mla":
            for name in ("d_latent", "d_latent_q", "d_rope"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}={getattr(self, name)!r} is a Multi-Head Latent Attention size; "
                                     f"it needs attention='mla' (got attention={self.attention!r}), or leave it None")
            return
        if self.d_latent is not None:
            _positive_int("d_latent", self.d_latent)
        if self.d_latent_q is not None and not (isinstance(self.d_latent_q, int) and not isinstance(self.d_latent_q, bool)
                                                and self.d_latent_q >= 0):
            raise ValueError(f"d_latent_q={self.d_latent_q!r} must be a positive int, or 0/None for no query compression")
        if self.n_kv_heads is not None and self.n_kv_heads != self.n_heads:
            raise ValueError(f"n_kv_heads={self.n_kv_heads} does not apply to attention='mla': every head reads "
                             "the one shared latent; leave n_kv_heads None")
        if self.d_rope is not None:
            if isinstance(self.d_rope, bool) or not isinstance(self.d_rope, int) or self.d_rope < 0:
                raise ValueError(f"d_rope={self.d_rope!r} must be a non-negative int")
            if self.d_rope % 2:
                raise ValueError(f"RoPE rotates pairs of dimensions, so d_rope={self.d_rope} must be even")
            if self.d_rope > 0 and not registry.is_rotary(self):
                raise ValueError(f"d_rope={self.d_rope} is the decoupled RoPE channel and needs a rotary positional "
                                 f"variant such as 'rope' (got {self.positional!r}); use d_rope=0 or None without one")
            if self.d_rope == 0 and registry.is_rotary(self):
                raise ValueError("positional='rope' with attention='mla' needs d_rope > 0 (the decoupled RoPE "
                                 "channel carries all position information); use positional='none' for no positions")

    def _check_moe(self) -> None:
        """The mixture-of-experts fields: meaningful only with ``ffn="moe"``."""
        if self.ffn != "moe":
            for f in dataclasses.fields(self):
                if f.name in MOE_FIELDS and getattr(self, f.name) != f.default:
                    raise ValueError(f"{f.name}={getattr(self, f.name)!r} is a mixture-of-experts setting; it needs "
                                     f"ffn='moe' (got ffn={self.ffn!r}), or leave it at its default {f.default!r}")
            return
        for name in ("n_experts", "experts_per_token", "n_expert_groups", "groups_per_token"):
            _positive_int(name, getattr(self, name))
        for name in ("n_shared_experts", "first_dense_layers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}={v!r} must be an int >= 0")
        if self.d_expert is not None:
            _positive_int("d_expert", self.d_expert)
        E, K, G, Kg = self.n_experts, self.experts_per_token, self.n_expert_groups, self.groups_per_token
        if E % G:
            raise ValueError(f"n_experts={E} must be divisible by n_expert_groups={G} (groups are equal)")
        if G > 1 and E // G < 2:
            raise ValueError(f"each expert group is scored by its two best experts, so it needs at least 2: "
                             f"n_experts={E} / n_expert_groups={G} is {E // G}; use fewer groups")
        if Kg > G:
            raise ValueError(f"groups_per_token={Kg} exceeds n_expert_groups={G}")
        if K > Kg * (E // G):
            raise ValueError(f"experts_per_token={K} is more than the {Kg * (E // G)} experts in "
                             f"groups_per_token={Kg} groups of {E // G}; lower K or allow more groups")
        for name, valid in (("expert_ffn", EXPERT_FFN), ("dense_ffn", DENSE_FFN), ("moe_impl", MOE_IMPL)):
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not valid; choose one of {', '.join(map(repr, valid))}")
        if self.first_dense_layers > self.n_layers:
            raise ValueError(f"first_dense_layers={self.first_dense_layers} exceeds n_layers={self.n_layers}")
        if not isinstance(self.normalize_gates, bool):
            raise ValueError(f"normalize_gates={self.normalize_gates!r} must be True or False")
        for name in ("routed_scaling", "balance_speed", "balance_loss"):
            v = getattr(self, name)
            if not is_number(v) or not 0 <= v < math.inf or (name == "routed_scaling" and v == 0):
                raise ValueError(f"{name}={v!r} must be a finite number " + ("> 0" if name == "routed_scaling" else ">= 0"))

    def dense_layer_config(self) -> "ModelConfig":
        """The config of the dense blocks of a MoE model (``ffn=dense_ffn``, expert fields at their defaults)."""
        return _dense_layer_config(self)

    # ---------------------------------------------------------------- derived sizes
    @property
    def latent_dim(self) -> int:
        """d_c, the width of the MLA key/value latent actually used."""
        return self.d_latent if self.d_latent is not None else 4 * self.d_head

    @property
    def latent_q_dim(self) -> int:
        """d_c', the width of the MLA query latent (0: no query compression)."""
        return self.d_latent_q or 0

    @property
    def rope_dim(self) -> int:
        """d_R, the width of the MLA decoupled RoPE channel (0 without RoPE)."""
        if self.d_rope is not None:
            return self.d_rope
        return max(2, self.d_head // 2 // 2 * 2) if registry.is_rotary(self) else 0

    @property
    def d_head(self) -> int:
        """D, the width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """G, the number of key/value heads actually used."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def expert_width(self) -> int:
        """F_e, the hidden width of one expert of ``ffn="moe"`` actually used."""
        if self.d_expert is not None:
            return self.d_expert
        dense = -(-(8 * self.d_model // 3) // 8) * 8  # a dense SwiGLU's width
        per = -(-dense // (self.experts_per_token + self.n_shared_experts))
        return -(-per // 8) * 8

    @property
    def ff_width(self) -> int:
        """F, the feed-forward hidden width actually used (with ``ffn="moe"``: of the dense blocks)."""
        if self.d_ff is not None:
            return self.d_ff
        if (self.dense_ffn if self.ffn == "moe" else self.ffn) == "swiglu":
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


MOE_FIELDS = ("n_experts", "n_shared_experts", "experts_per_token", "n_expert_groups", "groups_per_token", "d_expert",
              "expert_ffn", "routed_scaling", "normalize_gates", "first_dense_layers", "dense_ffn", "balance_speed",
              "balance_loss", "moe_impl")


@functools.lru_cache(maxsize=64)
def _dense_layer_config(config: ModelConfig) -> ModelConfig:
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.name in MOE_FIELDS}
    return config.replace(**defaults, ffn=config.dense_ffn)


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} must be a positive int")
