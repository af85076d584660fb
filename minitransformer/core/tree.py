"""Parameter trees: the model's nested dict of arrays, and its dotted names.

``params["blocks"][0]["attn"]["W_Q"]`` is named ``blocks.0.attn.W_Q`` in
checkpoints, caches and figures; these helpers go between the two views.
"""

from __future__ import annotations

import numpy as np


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """``{"blocks.0.attn.W_Q": array, ...}`` for a nested dict/list tree of arrays (views, not copies)."""
    out = {}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list)):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def unflatten_like(flat: dict, template):
    """The inverse of `flatten`, shaped like ``template`` (used when loading checkpoints)."""
    def build(node, prefix):
        if isinstance(node, dict):
            return {k: build(v, f"{prefix}{k}.") for k, v in node.items()}
        if isinstance(node, list):
            return [build(v, f"{prefix}{i}.") for i, v in enumerate(node)]
        return flat[prefix[:-1]]
    return build(template, "")


def set_path(tree, dotted: str, value) -> None:
    """Set the leaf at dotted name ``dotted`` (``blocks.0.attn.W_Q``) of a nested tree."""
    *parents, last = dotted.split(".")
    node = tree
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def to_float64(tree):
    """A copy of a nested dict/list tree of arrays with every leaf in float64 (for gradient checks)."""
    if isinstance(tree, dict):
        return {k: to_float64(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [to_float64(v) for v in tree]
    return tree.astype(np.float64)


def add_trees(trees: list):
    """The leaf-by-leaf sum of nested dict/list trees of arrays with one layout (shards' gradients).

    The sums are new arrays (a leaf may be a view that shares memory with another).
    Leaves that are None (a part with no gradient) stay None.
    """
    first, rest = trees[0], trees[1:]
    if isinstance(first, dict):
        return {k: add_trees([first[k]] + [t[k] for t in rest]) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(add_trees([first[i]] + [t[i] for t in rest]) for i in range(len(first)))
    if first is None or not rest:
        return first
    total = np.add(first, rest[0])
    for t in rest[1:]:
        total += t
    return total


def check_like(given, expected, what: str, hint: str) -> None:
    """Refuse ``given`` unless it is a tree with ``expected``'s names, shapes and a float dtype.

    The message names the first difference (missing or unknown names, or an array's shape)
    and ends with ``hint``.
    """
    if not isinstance(given, dict):
        raise TypeError(f"{what} must be a nested dict of arrays, got {type(given).__name__}")
    want, have = flatten(expected), flatten(given)
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
        raise ValueError(f"{what} do not fit: missing {missing[:3] or 'nothing'}, unknown {extra[:3] or 'nothing'} ({hint})")
    for name, w in want.items():
        a = have[name]
        if not isinstance(a, np.ndarray) or a.shape != w.shape or a.dtype.kind != "f":
            got = f"{a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"{what}[{name!r}] is a {got}; expected a float array of shape {w.shape} ({hint})")
