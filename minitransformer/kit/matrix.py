"""The configurations the contract kit runs a stage under: enough of them to reach every path.

One configuration hides mistakes. A RoPE backward with the wrong sign passes
under learned positions (nothing is rotated); a grouped-query backward that
sums the query heads of a group over the wrong axis passes with one key/value
head per query head, and with a single one (both groupings agree then): only
a count in between tells them apart. So, by default, `check_stage` runs each
variant over a small matrix:

============  =========================================================================
kind          configurations (tiny: d_model 16, 4 heads of width 4, context 12)
============  =========================================================================
attention     positions learned and rope × key/value heads 4 (MHA), 2 (GQA), 1 (MQA);
              the last one also without biases
attention     (``"mla"``) positions learned and rope × without and with query
              compression (d_latent_q 0 and 8); rope gives the decoupled channel d_rope 2
positional    positions 0..5 and 6..11 (the last window before the context boundary);
              a rotary variant also in both pairings (rope_style half and interleaved)
ffn           with and without biases
============  =========================================================================

`default_configs(kind, variant)` builds that list, and `label(kind, config, variant)`
names each configuration in a few words for the report (``"rope kv=2/4"``).
"""

from __future__ import annotations

from ..core import registry
from ..core.config import ModelConfig

ALIASES = {"feedforward": "ffn"}  # the stage's module is called feedforward; its kind in the registry is "ffn"

# the smallest model that still has every path: 4 heads (so 2 key/value heads is a true group), width 4
BASE = dict(vocab_size=32, context_length=12, d_model=16, n_layers=1, n_heads=4)


def resolve_kind(kind: str) -> str:
    """The registry's name for ``kind`` (`core.registry.KINDS`); ``"feedforward"`` is accepted for ``"ffn"``."""
    kind = ALIASES.get(kind, kind)
    if kind not in registry.KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, registry.KINDS))} (the kinds of "
                         f"minitransformer.core.registry.KINDS), got {kind!r}")
    return kind


def base_config(kind: str, name=None) -> ModelConfig:
    """The tiny configuration the matrix starts from, choosing ``name`` for ``kind`` when it is registered."""
    cfg = ModelConfig(**BASE)
    if name is not None and name in registry.names(kind):
        cfg = cfg.replace(**{kind: name})
    return cfg


def default_configs(kind: str, variant) -> list:
    """The matrix of configurations a variant runs under when the caller gives none.

    Args:
        kind: ``"positional"``, ``"attention"`` or ``"ffn"``.
        variant: a `core.registry.Variant` (registered or not): its ``name`` chooses the
            variant in the configs when registered, its ``rotate`` says whether it is rotary.
    """
    kind = resolve_kind(kind)
    base = base_config(kind, variant.name)
    if kind == "attention":
        if base.attention == "mla":
            return [base.replace(positional=pos, d_latent_q=dq, bias=False)
                    for pos in ("learned", "rope") for dq in (0, 8)]
        configs = [base.replace(positional=pos, n_kv_heads=g) for pos in ("learned", "rope") for g in (4, 2, 1)]
        configs[-1] = configs[-1].replace(bias=False)  # the paths without biases, once
        return configs
    if kind == "positional":
        if variant.rotate is not None:  # both pairings of dimensions, should the variant read rope_style
            return [base.replace(rope_style="half"), base.replace(rope_style="interleaved")]
        return [base]
    return [base.replace(bias=True), base.replace(bias=False)]


def label(kind: str, config, variant) -> str:
    """A few words naming what ``config`` decides for a stage of ``kind`` (the variant's own name aside)."""
    words = []
    if kind == "attention":
        words.append(config.positional)
        if config.attention == "mla":
            words.append(f"Dq={config.latent_q_dim} Dr={config.rope_dim}")
        else:
            words.append(f"kv={config.kv_heads}/{config.n_heads}")
            if not config.bias:
                words.append("no bias")
    elif kind == "positional":
        if variant.rotate is not None:
            words.append(config.rope_style)
    else:
        words.append("bias" if config.bias else "no bias")
    return " ".join(words)


def as_list(config) -> list:
    """``config`` (one `ModelConfig`, or a list/tuple of them) as a non-empty list."""
    configs = list(config) if isinstance(config, (list, tuple)) else [config]
    bad = [type(c).__name__ for c in configs if not isinstance(c, ModelConfig)]
    if not configs or bad:
        raise ValueError(f"config must be a ModelConfig or a non-empty list of them, got {bad or 'an empty list'}: "
                         "build one with ModelConfig(...) or ModelConfig.preset(...)")
    return configs
