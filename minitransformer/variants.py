"""The built-in variants of each stage, registered by name in one place.

``ModelConfig(positional="rope", attention="mla", ffn="swiglu")`` names
variants; the registry (`minitransformer.core.registry`) maps each name to its
functions. This module is the only one that imports both the stages and the
registry: the stages know nothing of names, and a student's own variant is
registered the same way as these.

    >>> from minitransformer.core import registry
    >>> registry.names("attention")
    ('mha', 'mla')
"""

from __future__ import annotations

from . import positional
from .attention import flops, mha, mha_reference, mla, mla_reference
from .attention.kv_cache import KVCache, LatentKVCache
from .core import registry
from .feedforward import mlp, moe, none


def _register_builtins() -> None:
    for name in positional.VARIANTS:  # one set of functions serves all four built-in encodings
        rotary = dict(rotate=positional.rope_rotate, rotate_backward=positional.rope_rotate_backward)
        registry.register("positional", name, init=positional.init, forward=positional.forward,
                          backward=positional.backward, builtin=True, **(rotary if name == "rope" else {}))
    # each attention variant names its reference path (the equations, tested equal to it);
    # ModelConfig(attention_impl="reference") runs it, registry.reference_for fetches it
    registry.register("attention", "mha", init=mha.init, forward=mha.forward, backward=mha.backward, builtin=True,
                      flops_per_token=flops.mha_flops_per_token, reference=mha_reference,
                      make_cache=lambda config, batch_size=1, max_len=None: KVCache.for_config(config, batch_size, max_len))
    registry.register("attention", "mla", init=mla.init, forward=mla.forward, backward=mla.backward, builtin=True,
                      flops_per_token=flops.mla_flops_per_token, reference=mla_reference,
                      make_cache=lambda config, batch_size=1, max_len=None: LatentKVCache.for_config(
                          config, batch_size=batch_size, max_len=max_len))
    for kind in mlp.KINDS:
        registry.register("ffn", kind, init=lambda config, rng, kind=kind: mlp.init(config, rng, kind),
                          forward=mlp.forward, backward=mlp.backward, builtin=True,
                          flops_per_token=lambda config, seq_len=None, kind=kind: mlp.flops_per_token(
                              config.replace(ffn=kind)))
    registry.register("ffn", "moe", init=moe.init, forward=moe.forward, backward=moe.backward, builtin=True,
                      flops_per_token=moe.flops_per_token)
    # an attention-only model (Elhage et al., 2021): the sub-layer adds nothing and costs nothing
    registry.register("ffn", "none", init=none.init, forward=none.forward, backward=none.backward, builtin=True,
                      flops_per_token=none.flops_per_token)


_register_builtins()
