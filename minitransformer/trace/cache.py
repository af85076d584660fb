"""Every activation under its published name, and hooks that read or change them.

- `run_with_cache(model, ids)` runs the model once and returns the logits and an
  `ActivationCache` mapping published names (`names.hook_table`) to arrays, taken
  from the model's own forward caches: no copies, no second computation.
- `run_with_hooks(model, ids, hooks={name: fn})` lets a function read or replace an
  activation while the model runs: ablate a head (``blocks.0.attn.hook_z``), patch
  a position (``blocks.1.hook_resid_pre``).

    >>> from minitransformer.model import GPT
    >>> model = GPT("toy", seed=0)
    >>> logits, cache = model.run_with_cache(np.array([[1, 2, 3]]))
    >>> cache["pattern", 0].shape            # blocks.0.attn.hook_pattern: (B, H, T, T)
    (1, 4, 3, 3)
    >>> "blocks.1.hook_resid_post" in cache
    True

Note on shapes: attention activations are stored head-major, (B, H, T, D), the
layout the computation uses; TransformerLens stores (B, T, H, D). ``hook_z`` is
the exception and is (B, T, H, D) in both.

This module takes the model as an argument and never imports it, so the model
can offer ``model.run_with_cache`` by calling these functions.
"""

from __future__ import annotations

import difflib
import inspect
import re
from typing import Callable, Union

import numpy as np

from ..core import nn
from .names import hook_table

NamesFilter = Union[None, str, list, tuple, set, Callable[[str], bool]]


class ActivationCache:
    """Activations by name, with TransformerLens-style shorthand.

    ``cache["blocks.0.attn.hook_pattern"]`` or ``cache["pattern", 0]`` (short name, layer);
    ``cache["embed"]`` for ``hook_embed``. ``keys()``, ``items()``, ``in`` and ``len`` work as
    for a dict, and ``repr`` lists the names.
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        self._arrays = arrays

    def _resolve(self, key) -> str:
        if isinstance(key, tuple):
            if len(key) != 2 or not isinstance(key[1], (int, np.integer)):
                raise KeyError(f"use cache[name] or cache[short_name, layer], got {key!r}")
            short, layer = key
            short = short[5:] if short.startswith("hook_") else short
            short = {"scores": "attn_scores"}.get(short, short)
            for sub in ("attn.", "mlp.", "", "ln1.", "ln2."):
                name = f"blocks.{layer}.{sub}hook_{short}"
                if name in self._arrays:
                    return name
            raise KeyError(f"no activation {short!r} in layer {layer}; names of that layer: "
                           f"{[n for n in self._arrays if n.startswith(f'blocks.{layer}.')]}")
        if key in self._arrays:
            return key
        if f"hook_{key}" in self._arrays:
            return f"hook_{key}"
        raise KeyError(f"no activation {key!r}; the cache holds {list(self._arrays)}")

    def __getitem__(self, key) -> np.ndarray:
        return self._arrays[self._resolve(key)]

    def __contains__(self, key) -> bool:
        try:
            self._resolve(key)
            return True
        except KeyError:
            return False

    def keys(self):
        return self._arrays.keys()

    def items(self):
        return self._arrays.items()

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations: " + ", ".join(self._arrays) + ")"


def check_names(config, names, hookable: bool = False) -> None:
    """Refuse a name that ``config``'s model does not publish (`hook_table`): a typo would match nothing.

    With ``hookable``, only the names a hook may change are accepted. A name with a layer
    must name a layer that publishes it (a mixture of experts' names skip its dense first blocks).
    """
    table = hook_table(config)
    published = {r["name"] for r in table}
    layers = {r["name"]: r["layers"] for r in table if r["hookable"] or not hookable}
    what = "hook point" if hookable else "published activation"
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"names must be strings such as 'blocks.0.attn.hook_pattern', got {name!r}")
        layer = re.match(r"^blocks\.(0|[1-9]\d*)\.", name)  # as the model writes them: 'blocks.01.' is no layer
        generic = re.sub(r"^blocks\.(0|[1-9]\d*)\.", "blocks.{i}.", name)
        if generic not in layers:
            if generic in published:  # hookable only: a name the cache holds but no hook may change
                hint = "it is published (read it with run_with_cache) but a hook cannot change it; "
            else:
                close = difflib.get_close_matches(generic, list(layers), n=1)
                hint = f"did you mean {close[0].replace('{i}', layer.group(1) if layer else '0')!r}? " if close else ""
            raise ValueError(f"{name!r} is not a {what} of this model; {hint}{what}s are {sorted(layers)} "
                             f"with {{i}} in 0..{config.n_layers - 1}")
        if layer and int(layer.group(1)) not in layers[generic]:
            where = layers[generic]
            raise ValueError(f"{name!r} is not a {what} of this model: layer {layer.group(1)} does not publish "
                             f"{generic!r} (layers {where.start}..{where.stop - 1} do)")


def _name_filter(config, names_filter: NamesFilter) -> Callable[[str], bool]:
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        check_names(config, [names_filter])
        return lambda name: name == names_filter
    if isinstance(names_filter, (list, tuple, set)):
        check_names(config, names_filter)
        wanted = set(names_filter)
        return lambda name: name in wanted
    if callable(names_filter):
        return names_filter
    raise ValueError(f"names_filter must be None, a name, a list of names or a function name -> bool, "
                     f"got {type(names_filter).__name__}")


def collect(model, cache: dict, logits: np.ndarray) -> dict[str, np.ndarray]:
    """Flatten a forward cache into published names (see `hook_table`); no copies, no recomputation."""
    c = model.config
    out = {"hook_embed": cache["embed"]["hook_embed"]}
    if cache["pos"] is not None and cache["pos"].get("hook_pos_embed") is not None:
        out["hook_pos_embed"] = cache["pos"]["hook_pos_embed"]
    for i, b in enumerate(cache["blocks"]):
        p = f"blocks.{i}."
        out[p + "hook_resid_pre"] = b["hook_resid_pre"]
        out[p + "ln1.hook_scale"], out[p + "ln1.hook_normalized"] = scale_and_normalized(b["ln1"])
        for k, v in b["attn"].items():
            if k.startswith("hook_"):
                out[p + "attn." + k] = v
        z = out[p + "attn.hook_z"]
        out[p + "attn.hook_z"] = z.reshape(*z.shape[:2], c.n_heads, -1)  # (B, T, H*D) -> (B, T, H, D)
        out[p + "hook_attn_out"] = b["hook_attn_out"]
        out[p + "hook_resid_mid"] = b["hook_resid_mid"]
        out[p + "ln2.hook_scale"], out[p + "ln2.hook_normalized"] = scale_and_normalized(b["ln2"])
        for k, v in b["mlp"].items():
            if k.startswith("hook_"):
                out[p + "mlp." + k] = v
        out[p + "hook_mlp_out"] = b["hook_mlp_out"]
        out[p + "hook_resid_post"] = b["hook_resid_post"]
    out["ln_final.hook_scale"], out["ln_final.hook_normalized"] = scale_and_normalized(cache["ln_final"])
    out["unembed.hook_in"] = cache["ln_final_out"]
    out["hook_logits"] = out["unembed.hook_out"] = logits
    return out


def scale_and_normalized(norm_cache) -> tuple[np.ndarray, np.ndarray]:
    """A norm's ``(hook_scale (B, T, 1), hook_normalized (B, T, C))`` from its backward cache.

    The cache of `nn.layernorm_forward` / `nn.rmsnorm_forward` holds ``(x, mean, 1/scale, gain)``
    (mean None for RMSNorm); the normalised stream is recomputed from it, divided by its scale
    and before the gain and bias (TransformerLens' meaning).
    """
    x, mean, rstd, _ = norm_cache
    return 1.0 / rstd, nn.normalized(x, mean, rstd)  # (B, T, 1), (B, T, C)


def run_with_cache(model, ids, names_filter: NamesFilter = None):
    """Run ``model`` on ids (B, T); return ``(logits, ActivationCache)`` of the names that pass the filter.

    ``names_filter`` is a name, a list of names (each must be a published name of this model,
    `hook_table`, so a typo is an error rather than an empty cache), or a function ``name -> bool``.
    """
    keep = _name_filter(model.config, names_filter)
    logits, cache = model.run_forward(ids, need_cache=True, record=True)
    arrays = {n: a for n, a in collect(model, cache, logits).items() if keep(n)}
    return logits, ActivationCache(arrays)


def _takes_two_arguments(name: str, fn: Callable) -> bool:
    """Whether hook ``fn`` is called as ``fn(array, name)`` (two parameters) or ``fn(array)``."""
    if not callable(fn):
        raise ValueError(f"the hook on {name!r} must be a function fn(array) or fn(array, name), got {type(fn).__name__}")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: call it with the array only
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    required = [p for p in positional if p.default is p.empty]
    if len(required) > 2 or not positional:
        raise ValueError(f"the hook on {name!r} must take (array) or (array, name); its signature is "
                         f"{inspect.signature(fn)}")
    # two required parameters, or a second one called "name": the hook wants to know where it is
    return len(required) == 2 or (len(positional) >= 2 and positional[1].name == "name")


def run_with_hooks(model, ids, hooks: dict[str, Callable]) -> np.ndarray:
    """Run ``model`` with ``hooks = {name: fn}``; ``fn(array)`` (or ``fn(array, name)``) may return a
    replacement (or None to leave it). Hookable names are marked in `hook_table`.

    >>> from minitransformer.model import GPT
    >>> model = GPT("toy", seed=0)
    >>> ablate_head_0 = lambda z: np.concatenate([np.zeros_like(z[:, :, :1]), z[:, :, 1:]], axis=2)
    >>> logits = run_with_hooks(model, np.array([[1, 2, 3]]), {"blocks.0.attn.hook_z": ablate_head_0})
    >>> logits.shape
    (1, 3, 64)
    """
    check_names(model.config, hooks, hookable=True)
    wants_name = {name: _takes_two_arguments(name, fn) for name, fn in hooks.items()}

    def hook(name: str, array: np.ndarray) -> np.ndarray:
        fn = hooks.get(name)
        if fn is None:
            return array
        # subtle: decided from the signature, not by catching TypeError, which would hide a
        # TypeError raised inside the student's own hook behind a misleading message
        result = fn(array, name) if wants_name[name] else fn(array)
        if result is None:
            return array
        result = np.asarray(result, dtype=array.dtype)
        if result.shape != array.shape:
            raise ValueError(f"the hook on {name!r} returned shape {result.shape}; it must keep {array.shape}")
        return result

    with nn.no_grad():
        return model.run_forward(ids, hook=hook)[0]
