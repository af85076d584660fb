"""The package's layout keeps the promises of its architecture.

- no import cycles, counting imports inside functions;
- no module reaches into another module's private names;
- the stages do not import the registry, and no stage imports another stage;
- every file stays under 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "minitransformer"
STAGES = ("minitransformer.embedding", "minitransformer.positional", "minitransformer.attention",
          "minitransformer.feedforward", "minitransformer.tokenizer")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names taken from it) for every import statement, at any depth."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((_resolve(module, node), [a.name for a in node.names]))
    return found


def _edges(module: str) -> set[str]:
    """The project's modules that ``module`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    out = set()
    for target, names in _imports(module):
        if not target.startswith("minitransformer"):
            continue
        subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
        if subs:
            out.update(subs)
        if len(subs) < len(names) or not names:
            out.add(target)
    out.discard(module)
    return {m for m in out if m in MODULES}


GRAPH = {m: _edges(m) for m in MODULES}


def test_there_are_no_import_cycles():
    state: dict[str, int] = {}
    cycles = []

    def visit(m, stack):
        state[m] = 1
        for n in GRAPH[m]:
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in GRAPH:
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_planted_cycle():
    saved = dict(GRAPH)
    try:
        GRAPH["minitransformer.core.nn"] = GRAPH["minitransformer.core.nn"] | {"minitransformer.model"}
        with pytest.raises(AssertionError, match="import cycles"):
            test_there_are_no_import_cycles()
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


def test_no_module_reaches_into_another_modules_private_names():
    offenders = []
    for module in MODULES:
        for target, names in _imports(module):
            if target.startswith("minitransformer"):
                offenders += [f"{module} imports {target}.{n}" for n in names
                              if n.startswith("_") and not n.startswith("__")]
        # attribute access on an imported project module: mod._private
        tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
        imported = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and _resolve(module, node).startswith("minitransformer") for a in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in imported):
                offenders.append(f"{module} reads {node.value.id}.{node.attr}")
    assert not offenders, "\n".join(offenders)


def _stage_of(module: str):
    return next((s for s in STAGES if module == s or module.startswith(s + ".")), None)


def test_stages_import_neither_the_registry_nor_each_other():
    offenders = []
    for module, targets in GRAPH.items():
        stage = _stage_of(module)
        if stage is None:
            continue
        for t in targets:
            other = _stage_of(t)
            if t == "minitransformer.core.registry":
                offenders.append(f"{module} imports the registry")
            elif other is not None and other != stage:
                offenders.append(f"{module} imports the stage {t}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_file_is_under_400_lines(module):
    n = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert n < 400, f"{MODULES[module].relative_to(ROOT.parent)} has {n} lines; split it by what it does"
