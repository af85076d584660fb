"""The course notebooks: each committed .ipynb matches its .py source and runs without errors.

The ``notebooks/src/*.py`` files (jupytext py:percent) are the source of truth;
``notebooks/build.py`` turns them into executed ``.ipynb`` files. These tests
keep the two from drifting, and execute every committed notebook in a fresh
kernel, in memory: nothing is written into the repository.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SOURCES = sorted((NOTEBOOKS / "src").glob("*.py"))


def _load_build():
    """Import notebooks/build.py by path (notebooks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no notebooks/__pycache__ in the repo
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


build = _load_build()


def _cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def test_there_are_notebooks():
    assert SOURCES, f"no notebook sources found in {NOTEBOOKS / 'src'}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_matches_source(source):
    committed = NOTEBOOKS / f"{source.stem}.ipynb"
    assert committed.exists(), f"{committed.name} is missing: run `python notebooks/build.py {source.stem}`"
    nb = nbformat.read(committed, as_version=4)
    assert _cells(nb) == _cells(build.notebook_from_source(source)), (
        f"{committed.name} differs from {source.relative_to(NOTEBOOKS.parent)}: "
        f"rebuild it with `python notebooks/build.py {source.stem}`"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_runs(source, tmp_path, monkeypatch):
    committed = NOTEBOOKS / f"{source.stem}.ipynb"
    if not committed.exists():
        pytest.skip(f"{committed.name} is missing (reported by test_committed_notebook_matches_source)")
    nb = nbformat.read(committed, as_version=4)
    # note: corpora are read from a copy of data/ (the kernel inherits this environment), so
    # building the pydoc corpus on first use writes into tmp_path, never into the repository.
    shutil.copytree(NOTEBOOKS.parent / "data" / "texts", tmp_path / "data" / "texts")
    monkeypatch.setenv("MINITRANSFORMER_DATA", str(tmp_path / "data"))
    client = nbclient.NotebookClient(
        nb, kernel_name=build.KERNEL, timeout=build.TIMEOUT, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error
    errors = [
        (k, out.get("ename"), out.get("evalue"))
        for k, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors, f"cells with errors: {errors}"


def test_conversion_of_percent_format(tmp_path):
    source = tmp_path / "example.py"
    source.write_text(
        "# header comment, not a cell\n\n"
        "# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n"
        "# %%\n# %config InlineBackend.figure_format = \"png\"\nx = 1  # %d stays a comment\n\n\n"
        "# %% a titled code cell\n# a comment\nprint(x)\n",
        encoding="utf-8",
    )
    nb = build.notebook_from_source(source)
    assert _cells(nb) == [
        ("markdown", "# Title\n\nSome *text*."),
        ("code", '%config InlineBackend.figure_format = "png"\nx = 1  # %d stays a comment'),
        ("code", "# a comment\nprint(x)"),
    ]
    assert [cell.id for cell in nb.cells] == ["cell-000", "cell-001", "cell-002"]  # stable across builds
    nbformat.validate(nb)
