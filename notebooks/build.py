"""Build the course notebooks and their solutions from py:percent sources, executed.

    notebooks/src/<name>.py                        -> notebooks/<name>.ipynb
    notebooks/solutions/src/<name>_solutions.py    -> notebooks/solutions/<name>_solutions.ipynb

The ``.py`` files are the source of truth: they diff and review like code. This
script turns each into a notebook, runs it top to bottom in a fresh ``python3``
kernel (working directory: the folder the notebook is written to, as when a
student opens it), and writes it with its outputs so students can read the
figures without running anything.

    python notebooks/build.py                 # every notebook and every solutions notebook
    python notebooks/build.py 01_tokenization # only those whose name contains this (both kinds)
    python notebooks/build.py 01_ 03_         # several filters: a name matching any of them

The conversion is written out here (no jupytext dependency) and understands the
part of py:percent the course uses:

- ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell (text after
  the marker, such as a cell title, is ignored);
- markdown lines are comments: the leading ``# `` (or a bare ``#``) is removed;
- in code cells, a commented magic ``# %config ...`` becomes ``%config ...``,
  as jupytext does, so the ``.py`` stays plain Python;
- blank lines around a cell are dropped; anything before the first marker
  (the file's header) is not a cell.

Outputs are kept (PNG figures included) but what changes on every run without
meaning anything is removed: execution timestamps, and random cell ids (cells are
numbered instead), so rebuilding an unchanged notebook gives a small diff.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
SOURCES = NOTEBOOKS / "src"
SOLUTIONS = NOTEBOOKS / "solutions"  # worked solutions of the exercises, kept apart from the notebooks
SOLUTION_SOURCES = SOLUTIONS / "src"
SOLUTION_SUFFIX = "_solutions"  # notebooks/solutions/src/<name>_solutions.py solves notebooks/src/<name>.py
KERNEL = "python3"
TIMEOUT = 600  # seconds per cell

_MARKER = re.compile(r"^# %%(?!%)(.*)$")  # "# %%" or "# %% [markdown]" or "# %% title"
# "# %config ..." -> "%config ...". note: only these magics, so an ordinary comment
# such as "# %d formats an int" is left alone.
_MAGIC = re.compile(r"^# (%{1,2}(?:config|matplotlib|time|timeit|load_ext|autoreload)\b)")


def _markdown_line(line: str) -> str:
    if line.startswith("# "):
        return line[2:]
    return line[1:] if line.startswith("#") else line


def _trim(lines: list[str]) -> str:
    """Join a cell's lines without the blank lines that separate cells in the .py."""
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return "\n".join(lines)


def notebook_from_source(path) -> nbformat.NotebookNode:
    """Convert one py:percent file to an (unexecuted) notebook with stable cell ids."""
    cells: list[tuple[str, list[str]]] = []  # (kind, lines)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        marker = _MARKER.match(line)
        if marker:
            kind = "markdown" if "[markdown]" in marker.group(1) else "code"
            cells.append((kind, []))
        elif cells:  # lines before the first marker are the file header, not a cell
            cells[-1][1].append(line)

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    for k, (kind, lines) in enumerate(cells):
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(_trim([_markdown_line(s) for s in lines]))
        else:
            cell = nbformat.v4.new_code_cell(_trim([_MAGIC.sub(r"\1", s) for s in lines]))
        cell["id"] = f"cell-{k:03d}"  # note: nbformat's default ids are random, so every build would differ
        nb.cells.append(cell)
    return nb


def target_of(source: Path) -> Path:
    """Where the executed notebook of ``source`` is written: next to the ``src/`` folder holding it."""
    source = Path(source)
    return source.parent.parent / f"{source.stem}.ipynb"


def sources(filters=()) -> list[Path]:
    """Every notebook source, then every solutions source, keeping those whose name contains a filter."""
    found = sorted(SOURCES.glob("*.py")) + sorted(SOLUTION_SOURCES.glob("*.py"))
    return [p for p in found if not filters or any(f in p.stem for f in filters)]


def execute(nb: nbformat.NotebookNode, cwd: Path = NOTEBOOKS) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel from ``cwd``; raise on the first error."""
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=TIMEOUT, record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def strip_noise(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove metadata that changes on every run (timestamps), keeping outputs and figures."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
    return nb


def build(source: Path) -> Path:
    """Convert, execute and write one notebook; return the path written."""
    target = target_of(source)
    nb = strip_noise(execute(notebook_from_source(source), cwd=target.parent))
    nbformat.validate(nb)
    tmp = target.with_suffix(".ipynb.tmp")  # write then rename: a failed build never leaves half a file
    nbformat.write(nb, tmp)
    tmp.replace(target)
    return target


def main(argv: list[str]) -> int:
    chosen = sources(argv)
    if not chosen:
        print(f"no notebook sources in {SOURCES} or {SOLUTION_SOURCES} match {argv}", file=sys.stderr)
        return 1
    for source in chosen:
        print(f"building {source.relative_to(NOTEBOOKS)} ...", flush=True)
        t0 = time.perf_counter()
        target = build(source)
        print(f"  wrote {target.relative_to(NOTEBOOKS.parent)} ({target.stat().st_size / 1024:.0f} KB) "
              f"in {time.perf_counter() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
