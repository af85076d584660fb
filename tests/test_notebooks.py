"""The course notebooks: each committed .ipynb matches its .py source and runs without errors.

The ``notebooks/src/*.py`` files (jupytext py:percent) are the source of truth;
``notebooks/build.py`` turns them into executed ``.ipynb`` files. These tests
keep the two from drifting, and execute every committed notebook in a fresh
kernel, in memory: nothing is written into the repository.

The worked solutions (``notebooks/solutions/src/<name>_solutions.py`` ->
``notebooks/solutions/<name>_solutions.ipynb``) are held to the same rules, and
more: every exercise check in them must pass, and a check function that a
solution shares by name with its notebook must be the notebook's check, word for
word, so a solution is judged by exactly what students run.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
pytestmark = pytest.mark.notebooks  # minutes: the fast path leaves them out (-m "not notebooks")


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
SOURCES = build.sources()  # notebooks, then solutions
SOLUTION_SOURCES = [p for p in SOURCES if p.parent == build.SOLUTION_SOURCES]


def _cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def _is_solution(source: Path) -> bool:
    return source.parent == build.SOLUTION_SOURCES


def test_there_are_notebooks():
    assert [p for p in SOURCES if not _is_solution(p)], f"no notebook sources found in {build.SOURCES}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_matches_source(source):
    committed = build.target_of(source)
    assert committed.exists(), f"{committed.name} is missing: run `python notebooks/build.py {source.stem}`"
    nb = nbformat.read(committed, as_version=4)
    assert _cells(nb) == _cells(build.notebook_from_source(source)), (
        f"{committed.relative_to(NOTEBOOKS.parent)} differs from {source.relative_to(NOTEBOOKS.parent)}: "
        f"rebuild it with `python notebooks/build.py {source.stem}`"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_notebook_runs(source, tmp_path, monkeypatch):
    committed = build.target_of(source)
    if not committed.exists():
        pytest.skip(f"{committed.name} is missing (reported by test_committed_notebook_matches_source)")
    nb = nbformat.read(committed, as_version=4)
    # note: the kernel inherits this environment, so building the pydoc corpus on first use
    # writes into tmp_path, never into the user's cache or the repository.
    monkeypatch.setenv("MINITRANSFORMER_CACHE", str(tmp_path / "cache"))
    client = nbclient.NotebookClient(
        nb, kernel_name=build.KERNEL, timeout=build.TIMEOUT, resources={"metadata": {"path": str(committed.parent)}}
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
    if _is_solution(source):  # a solution leaves no exercise undone
        undone = [
            (k, line)
            for k, cell in enumerate(nb.cells)
            if cell.cell_type == "code"
            for out in cell.outputs
            if out.output_type == "stream"
            for line in out.text.splitlines()
            if "not done yet" in line
        ]
        assert not undone, f"{committed.name}: exercises whose check reports 'not done yet': {undone}"


@pytest.mark.parametrize("solution", SOLUTION_SOURCES, ids=lambda p: p.stem)
def test_solution_belongs_to_a_notebook(solution):
    assert solution.stem.endswith(build.SOLUTION_SUFFIX), (
        f"{solution.name}: solution sources are named <notebook>{build.SOLUTION_SUFFIX}.py"
    )
    notebook = build.SOURCES / f"{solution.stem[: -len(build.SOLUTION_SUFFIX)]}.py"
    assert notebook.exists(), f"{solution.name} solves {notebook.name}, which does not exist"


def _check_functions(path: Path) -> dict[str, str]:
    """The ``test_*`` functions defined at the top level of a py:percent source, as normalised code."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name: ast.unparse(node) for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


@pytest.mark.parametrize("solution", SOLUTION_SOURCES, ids=lambda p: p.stem)
def test_solution_runs_the_notebooks_checks(solution):
    notebook = build.SOURCES / f"{solution.stem[: -len(build.SOLUTION_SUFFIX)]}.py"
    if not notebook.exists():
        pytest.skip("reported by test_solution_belongs_to_a_notebook")
    theirs, ours = _check_functions(notebook), _check_functions(solution)
    shared = sorted(set(theirs) & set(ours))
    changed = [name for name in shared if theirs[name] != ours[name]]
    assert not changed, (
        f"{solution.name} changes the checks {changed} of {notebook.name}: copy them unchanged, "
        "so the solution passes exactly what students run"
    )


def test_sources_and_targets():
    assert build.target_of(build.SOURCES / "01_x.py") == NOTEBOOKS / "01_x.ipynb"
    assert build.target_of(build.SOLUTION_SOURCES / "01_x_solutions.py") == build.SOLUTIONS / "01_x_solutions.ipynb"
    chosen = build.sources(["01_tokenization"])
    assert build.SOURCES / "01_tokenization_distinction.py" in chosen
    assert all("01_tokenization" in p.stem for p in chosen)


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


def test_attention_checks_say_what_is_wrong_before_judging_values(monkeypatch, tmp_path):
    """Notebook 04's checks name a wrong structure (None, swapped outputs, a wrong shape) first."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("MINITRANSFORMER_CACHE", str(tmp_path / "cache"))
    source = build.SOLUTION_SOURCES / "04_attention_retrieval_solutions.py"
    ns: dict = {"__name__": "solutions_04"}
    exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), ns)
    right = ns["my_causal_attention"]
    wrong = {
        "None": (lambda q, k, v: None, "returned None: end it with `return pattern, z`"),
        "swapped": (lambda q, k, v: right(q, k, v)[::-1], "pattern and z are swapped"),
        "one array": (lambda q, k, v: right(q, k, v)[0], "return two arrays"),
        "pattern transposed to (T, 1)": (lambda q, k, v: (right(q, k, v)[0][:, :1], right(q, k, v)[1]),
                                         "the pattern has shape"),
        "no softmax": (lambda q, k, v: (np.tril(q @ k.T), right(q, k, v)[1]), "must sum to 1"),
        "no mask": (lambda q, k, v: (np.full((len(q), len(q)), 1 / len(q)), right(q, k, v)[1]), "mask the future"),
    }
    for name, (answer, words) in wrong.items():
        ns["my_causal_attention"] = answer
        with pytest.raises(AssertionError, match=re.escape(words)):
            ns["test_my_causal_attention"]()
    ns["my_mqa"] = lambda params, x, n_heads: None
    with pytest.raises(AssertionError, match="my_mqa returned None"):
        ns["test_my_mqa"]()
    ns["my_window_attention"] = lambda q, k, v, window: v[:, :1]
    with pytest.raises(AssertionError, match=re.escape("z has shape (12, 1); expected (T, D) = (12, 8)")):
        ns["test_my_window_attention"]()


def test_saved_progress_bars_show_where_they_ended():
    """Notebook 06 trains with a progress bar: its saved output is one bar at its end, no stderr fragments."""
    import json

    nb = json.loads((NOTEBOOKS / "06_training_end_to_end.ipynb").read_text(encoding="utf-8"))
    outputs = [out for cell in nb["cells"] for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.get("name") == "stderr"]
    bars = ["".join(out["data"]["text/plain"]) for out in outputs
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    assert len(bars) == 1 and "600/600" in bars[0] and "step/s" in bars[0], bars
