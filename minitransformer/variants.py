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
from .attention import mha, mla
from .attention.kv_cache import KVCache, LatentKVCache
from .core import registry
from .feedforward import mlp, moe


def _register_builtins() -> None:
    for name in ("learned", "sinusoidal", "rope", "none"):  # one set of functions serves all four
        rotary = dict(rotate=positional.rope_rotate, rotate_backward=positional.rope_rotate_backward)
        registry.register("positional", name, init=positional.init, forward=positional.forward,
                          backward=positional.backward, builtin=True, **(rotary if name == "rope" else {}))
    registry.register("attention", "mha", init=mha.init, forward=mha.forward, backward=mha.backward, builtin=True,
                      make_cache=lambda config, batch_size=1, max_len=None: KVCache.for_config(config, batch_size, max_len))
    registry.register("attention", "mla", init=mla.init, forward=mla.forward, backward=mla.backward, builtin=True,
                      make_cache=lambda config, batch_size=1, max_len=None: LatentKVCache.for_config(
                          config, batch_size=batch_size, max_len=max_len))
    for kind in mlp.KINDS:
        registry.register("ffn", kind, init=lambda config, rng, kind=kind: mlp.init(config, rng, kind),
                          forward=mlp.forward, backward=mlp.backward, builtin=True)
    registry.register("ffn", "moe", init=moe.init, forward=moe.forward, backward=moe.backward, builtin=True)


_register_builtins()
