"""Run the examples in the docstrings, so the documentation cannot drift from the code."""

import doctest
import importlib
from pathlib import Path

import pytest

import minitransformer

def _modules_with_examples() -> list[str]:
    """Every module of the package whose source has a docstring example (found, not listed by hand)."""
    root = Path(minitransformer.__file__).parent
    names = []
    for path in sorted(root.rglob("*.py")):
        if ">>> " in path.read_text(encoding="utf-8"):
            rel = path.relative_to(root.parent).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


MODULES = _modules_with_examples()


def test_the_main_modules_have_examples():
    for name in ("minitransformer.model", "minitransformer.core.config", "minitransformer.tokenizer.core",
                 "minitransformer.attention.mla", "minitransformer.trace.cache", "minitransformer.kit.gradcheck"):
        assert name in MODULES, f"{name} lost its docstring examples"



@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0, f"{name} has no docstring example"
