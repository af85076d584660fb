"""Registries: every variant of a stage is a name mapped to its functions.

``ModelConfig(positional="alibi")`` is valid as soon as a variant named
``"alibi"`` is registered, and the model, the trainer, the trace and the figures
use it without a line of the library changing. The built-in variants are
registered the same way, all in one place (`minitransformer.variants`, which
imports the stages; the stages themselves never import the registry).

    >>> from minitransformer.core import registry
    >>> registry.names("positional")
    ('learned', 'sinusoidal', 'rope', 'none')

Registering a positional encoding (a student's ALiBi, say) looks like this; a
decorator form registers a class or namespace that has the functions::

    register_positional("alibi", init=init, forward=forward, backward=backward,
                        score_bias=alibi_bias)

The contract of each kind is the library stage's own (``docs/extending.md`` adds a
variant end to end):

- ``positional``: ``init(config, rng) -> params``; ``forward(params, x, positions,
  config, need_cache=None) -> (x, cache)``; ``backward(params, cache, dy) -> (dx,
  grads)``. What it offers attention, which every attention variant consumes
  (none of them asks for a variant by name): ``rotate(x, positions, config) -> x``
  with ``rotate_backward(dy, positions, config) -> dx``, a rotation of queries and
  keys (..., T, d) to their positions (how RoPE works), and ``score_bias(q_positions,
  k_positions, config) -> (H, T, S)``, a bias added to the scores (how ALiBi works).
- ``attention``: ``init``; ``forward(params, x, config, positions, kv_cache=None,
  layer=0, need_cache=None, record=False, hook=None, positional=None) -> (y, cache)``,
  where ``positional`` is the chosen positional variant (its ``rotate`` and
  ``score_bias``, either may be None); ``backward``;
  optional ``make_cache(config, batch_size, max_len)`` for its KV cache.
  Any variant may offer ``reference=``, an object (a module) with ``forward`` and
  ``backward`` of the same contract: the readable path it is tested equal to, run
  with ``ModelConfig(attention_impl="reference")`` or fetched by `reference_for`.
- ``ffn``: ``init``; ``forward(params, x, config, need_cache=None) -> (y, cache)``; ``backward``.

A variant without ``backward`` can run forward (a first draft); training with it
raises an error that says so.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

KINDS = ("positional", "attention", "ffn")
EXTRAS = ("rotate", "rotate_backward", "score_bias", "make_cache", "flops_per_token", "reference")  # optional things a variant may offer
IMPLS = ("fast", "reference")  # which path of a variant runs: its own, or its reference (``reference_for``)
_REGISTRY: dict[str, dict[str, "Variant"]] = {kind: {} for kind in KINDS}


@dataclass(frozen=True)
class Variant:
    """One registered variant: its kind, name and functions (plus optional extras)."""

    kind: str
    name: str
    init: Callable
    forward: Callable
    backward: Optional[Callable] = None
    extras: dict = field(default_factory=dict)
    builtin: bool = False

    # what a positional variant offers attention (None when it offers nothing of the kind)
    @property
    def rotate(self) -> Optional[Callable]:
        """``rotate(x, positions, config) -> x``: turn queries or keys (..., T, d) to their positions."""
        return self.extras.get("rotate")

    @property
    def rotate_backward(self) -> Optional[Callable]:
        """``rotate_backward(dy, positions, config) -> dx``: the gradient through `rotate`."""
        return self.extras.get("rotate_backward")

    @property
    def score_bias(self) -> Optional[Callable]:
        """``score_bias(q_positions, k_positions, config) -> (H, T, S)``: added to attention scores."""
        return self.extras.get("score_bias")

    @property
    def reference(self):
        """The readable path this variant is tested equal to (an object with ``forward`` and ``backward``,
        such as the module `attention.mha_reference`), or None. See `reference_for`."""
        return self.extras.get("reference")

    def require_backward(self) -> Callable:
        if self.backward is None:
            raise ValueError(f"the {self.kind} variant {self.name!r} has no backward, so it cannot be trained; "
                             f"register it with backward=... (forward and inference work without one)")
        return self.backward


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown kind of stage {kind!r}; kinds are {', '.join(map(repr, KINDS))}")


def register(kind: str, name: str, *, init: Optional[Callable] = None, forward: Optional[Callable] = None,
             backward: Optional[Callable] = None, replace: bool = False, builtin: bool = False,
             **extras) -> Variant:
    """Register variant ``name`` of stage ``kind``; return it.

    Raises:
        ValueError: if the name is taken (pass ``replace=True`` to overwrite a variant of
            your own), or ``init``/``forward`` are missing or not callable.
    """
    _check_kind(kind)
    if not isinstance(name, str) or not name:
        raise ValueError(f"a variant needs a non-empty string name, got {name!r}")
    missing = [n for n, f in (("init", init), ("forward", forward)) if not callable(f)]
    if missing:
        raise ValueError(f"{kind} variant {name!r} is missing {missing}: give init(config, rng) -> params "
                         "and forward(...) with the stage's signature (see minitransformer.core.registry)")
    if backward is not None and not callable(backward):
        raise ValueError(f"{kind} variant {name!r}: backward must be a function, got {type(backward).__name__}")
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:  # a misspelled extra would be ignored without a word
        raise ValueError(f"{kind} variant {name!r}: unknown option(s) {', '.join(map(repr, unknown))}; a variant may "
                         f"offer {', '.join(EXTRAS)}")
    for key, value in extras.items():
        if key != "reference" and value is not None and not callable(value):
            raise ValueError(f"{kind} variant {name!r}: {key}= must be a function, got {type(value).__name__}")
    reference = extras.get("reference")
    if reference is not None and not callable(getattr(reference, "forward", None)):
        raise ValueError(f"{kind} variant {name!r}: reference= must be an object with forward (and backward) "
                         f"functions, such as a module; got {type(reference).__name__}")
    existing = _REGISTRY[kind].get(name)
    if existing is not None and not (replace or builtin):  # built-ins re-register on a module reload
        raise ValueError(f"a {kind} variant named {name!r} is already registered; choose another name, "
                         "or pass replace=True to overwrite your own")
    if existing is not None and existing.builtin and not builtin:
        raise ValueError(f"{name!r} is a built-in {kind} variant and cannot be replaced; register yours "
                         "under another name")
    variant = Variant(kind, name, init, forward, backward, dict(extras), builtin)
    _REGISTRY[kind][name] = variant
    return variant


def _registrar(kind: str):
    def reg(name: str, init=None, forward=None, backward=None, replace: bool = False, **extras):
        if init is None and forward is None:  # used as a decorator on a class or namespace
            def decorate(obj):
                _refuse_instance_methods(obj, kind, name)
                register(kind, name, init=getattr(obj, "init", None), forward=getattr(obj, "forward", None),
                         backward=getattr(obj, "backward", None), replace=replace,
                         **{k: getattr(obj, k) for k in EXTRAS if hasattr(obj, k)}, **extras)
                return obj
            return decorate
        return register(kind, name, init=init, forward=forward, backward=backward, replace=replace, **extras)
    reg.__name__ = f"register_{kind}"
    reg.__doc__ = f"Register a {kind} variant: ``register_{kind}(name, init=..., forward=..., backward=...)``, " \
                  f"or ``@register_{kind}(name)`` on a class/namespace with those functions."
    return reg


def _refuse_instance_methods(obj, kind: str, name: str) -> None:
    """A decorated class is used as a namespace: its functions are called without an instance."""
    if not isinstance(obj, type):
        return
    for attr in ("init", "forward", "backward") + EXTRAS:
        f = inspect.getattr_static(obj, attr, None)
        if inspect.isfunction(f) and next(iter(inspect.signature(f).parameters), None) == "self":
            raise ValueError(f"{kind} variant {name!r}: {obj.__name__}.{attr} takes self, but the class is used as a "
                             "namespace and never instantiated; drop self (or mark it @staticmethod)")


register_positional = _registrar("positional")
register_attention = _registrar("attention")
register_ffn = _registrar("ffn")


def unregister(kind: str, name: str) -> None:
    """Remove a variant of your own (built-ins stay)."""
    _check_kind(kind)
    variant = _REGISTRY[kind].get(name)
    if variant is None:
        raise ValueError(f"no {kind} variant named {name!r} is registered")
    if variant.builtin:
        raise ValueError(f"{name!r} is a built-in {kind} variant and cannot be removed")
    del _REGISTRY[kind][name]


def get(kind: str, name: str) -> Variant:
    """The variant ``name`` of ``kind``, or a ValueError listing the registered names."""
    _check_kind(kind)
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        raise ValueError(f"{kind}={name!r} is not a registered variant; choose one of "
                         f"{', '.join(map(repr, _REGISTRY[kind]))}, or register yours with "
                         f"minitransformer.core.registry.register_{kind}({name!r}, ...)") from None


def chosen(kind: str, config) -> Variant:
    """The variant that ``config`` chooses for ``kind``: ``chosen("positional", cfg)`` is the
    registered variant named ``cfg.positional``; with ``cfg.attention_impl == "reference"``,
    ``chosen("attention", cfg)`` is that variant's reference path (`reference_for`)."""
    name = getattr(config, kind)
    if getattr(config, kind + "_impl", "fast") == "reference":
        return reference_for(kind, name)
    variant = _REGISTRY.get(kind, {}).get(name)  # note: the common case without get's checks (every token)
    return variant if variant is not None else get(kind, name)


def reference_for(kind: str, name: str) -> Variant:
    """The reference path of variant ``name`` as a variant of its own, to run or compare against.

    Its ``forward`` and ``backward`` are the reference's (the equations, written out), its
    ``init`` and extras (``make_cache``, ...) the variant's, so parameters, caches and
    published names are interchangeable: a stage written by a student can be checked
    against ``reference_for("attention", "mha")`` the same way the fast path is.

        >>> ref = reference_for("attention", "mha")
        >>> ref.forward.__module__
        'minitransformer.attention.mha_reference'
    """
    variant = get(kind, name)
    reference = variant.reference
    if reference is None:
        offering = [n for n, v in _REGISTRY[kind].items() if v.reference is not None]
        raise ValueError(f"the {kind} variant {name!r} has no reference path; variants with one: "
                         f"{', '.join(map(repr, offering)) or 'none'} (register one with reference=...)")
    extras = {k: v for k, v in variant.extras.items() if k != "reference"}
    return Variant(kind, name, getattr(reference, "init", variant.init), reference.forward,
                   getattr(reference, "backward", None), extras, variant.builtin)


def is_rotary(config) -> bool:
    """Whether ``config``'s positional variant rotates queries and keys inside attention (as RoPE does)."""
    return chosen("positional", config).rotate is not None


def names(kind: str) -> tuple:
    """The registered names of ``kind``, built-ins first."""
    _check_kind(kind)
    return tuple(_REGISTRY[kind])
