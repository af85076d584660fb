"""Build the course notebooks: notebooks/src/*.py (jupytext py:percent) -> notebooks/*.ipynb, executed.

The ``.py`` files are the source of truth: they diff and review like code. This
script turns each into a notebook, runs it top to bottom in a fresh ``python3``
kernel (working directory: ``notebooks/``), and writes it with its outputs so
students can read the figures without running anything.

    python notebooks/build.py                 # every notebook
    python notebooks/build.py 01_tokenization # only those whose name contains this

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
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
SOURCES = NOTEBOOKS / "src"
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


def execute(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel from the notebooks/ directory; raise on the first error."""
    client = NotebookClient(
        nb, kernel_name=KERNEL, timeout=TIMEOUT, record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
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
    target = NOTEBOOKS / f"{source.stem}.ipynb"
    nb = strip_noise(execute(notebook_from_source(source)))
    nbformat.validate(nb)
    tmp = target.with_suffix(".ipynb.tmp")  # write then rename: a failed build never leaves half a file
    nbformat.write(nb, tmp)
    tmp.replace(target)
    return target


def main(argv: list[str]) -> int:
    sources = sorted(p for p in SOURCES.glob("*.py") if not argv or any(a in p.stem for a in argv))
    if not sources:
        print(f"no notebook sources in {SOURCES} match {argv}", file=sys.stderr)
        return 1
    for source in sources:
        print(f"building {source.name} ...", flush=True)
        target = build(source)
        print(f"  wrote {target.relative_to(NOTEBOOKS.parent)} ({target.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
