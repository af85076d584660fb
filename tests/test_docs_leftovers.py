"""The package, its docs, notebooks and benchmarks speak of the project alone.

No development leftovers: no pointers to planning files outside the repository
("specs/..."), no issue numbers ("issue 8", "(issue 4 §5)", "its own issue").
The guides to MLA and to the scale-out simulator exist and the README links them
from the sections they belong to.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["minitransformer/**/*.py", "docs/*.md", "README.md", "notebooks/src/*.py",
           "notebooks/solutions/src/*.py", "benchmarks/*.py"]
LEFTOVERS = re.compile(r"specs/|\bissues?\s*#?\s*\d+|\bits own issue\b", re.IGNORECASE)


def scanned_files() -> list[Path]:
    files = {path for pattern in SCANNED for path in ROOT.glob(pattern)}
    return sorted(p for p in files if p.is_file())


def leftovers(text: str) -> list[str]:
    """The leftover phrases in ``text``, one ``line N: ...`` entry per line that has one."""
    return [f"line {n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1) if LEFTOVERS.search(line)]


@pytest.mark.parametrize("text", [
    "the specification is ``specs/scaleout.md``", "see Specs/MLA.md §1.3", "simulated at the level of flows (issue 8).",
    "Targets (issue 4 §5): the absorbed path", "as in Issue #12", "that belongs in its own issue",
])
def test_the_check_catches_leftovers(text):
    assert leftovers(text) == [f"line 1: {text}"]


@pytest.mark.parametrize("text", [
    "every position issues a query", "no issues found", "tissue 3", "the docs/mla.md checks T1-T12",
])
def test_the_check_leaves_ordinary_prose_alone(text):
    assert leftovers(text) == []


def test_the_scan_covers_every_kind_of_file():
    rel = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    for expected in ("minitransformer/attention/mla.py", "minitransformer/scaleout/__init__.py", "docs/mla.md",
                     "docs/scaleout.md", "README.md", "benchmarks/bench_mla.py"):
        assert expected in rel
    assert any(r.startswith("notebooks/src/") for r in rel) and any(r.startswith("notebooks/solutions/src/") for r in rel)


def test_no_specs_paths_or_issue_numbers_in_the_project():
    found = {p.relative_to(ROOT).as_posix(): hits for p in scanned_files()
             if (hits := leftovers(p.read_text(encoding="utf-8")))}
    assert not found, "development leftovers (point to docs/*.md by section name instead):\n" + "\n".join(
        f"{path} {hit}" for path, hits in found.items() for hit in hits)


def readme_section(title_start: str) -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parts = [s for s in re.split(r"^## ", readme, flags=re.M) if s.startswith(title_start)]
    assert len(parts) == 1, f"the README needs exactly one section '## {title_start}...'"
    return parts[0]


@pytest.mark.parametrize("section, guide", [
    ("Multi-Head Latent Attention", "docs/mla.md"),
    ("Scale-out", "docs/scaleout.md"),
])
def test_the_guides_exist_and_the_readme_links_them(section, guide):
    path = ROOT / guide
    assert path.is_file(), f"{guide} is missing"
    assert path.read_text(encoding="utf-8").startswith("# ")
    assert f"]({guide})" in readme_section(section), f"the README's '{section}' section should link {guide}"
