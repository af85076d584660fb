"""The package installs anywhere: a wheel built from the sources carries the course model, its tokenizer
and the small texts, and `minitransformer demo` runs from an unrelated folder, writing no cache into
the installed package or the current folder. Slow (a build and a fresh environment): skipped by the
fast path (-m "not slow"), run by CI."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build leaves nothing (build/, *.egg-info) in the repository
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "minitransformer", src / "minitransformer",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"),
          str(src)])
    (path,) = (tmp / "dist").glob("minitransformer-*.whl")
    return path


def test_the_wheel_carries_the_data_and_the_license(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for name in ("course/model.npz", "course/tokenizer.json", "texts/tiny.txt", "texts/multilingual.txt"):
        assert f"minitransformer/data/{name}" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata and "Requires-Dist: tqdm" in metadata
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "data/"))]


def test_installed_demo_runs_from_an_unrelated_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
          str(wheel)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINITRANSFORMER_DATA",
                                                            "MINITRANSFORMER_CACHE")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")
    where = _run([str(python), "-c", "import minitransformer, sys; print(minitransformer.__file__)"], cwd=elsewhere,
                 env=env).stdout.strip()
    installed = Path(where).parent
    assert venv in installed.parents  # the wheel's copy, not the repository's
    script = venv / ("Scripts/minitransformer.exe" if os.name == "nt" else "bin/minitransformer")
    out = _run([str(script), "demo", "--color", "never", "--max-new-tokens", "5"], cwd=elsewhere, env=env).stdout
    assert "== step 1: stage 1, BPE tokenization -> distinction ==" in out and "validation loss" in out
    assert _run([str(script), "--version"], env=env).stdout.startswith("minitransformer ")
    corpus = _run([str(python), "-c", "from minitransformer.training.data import corpus_path; "
                   "print(corpus_path('pydoc'))"], cwd=elsewhere, env=env).stdout.strip()
    assert Path(corpus).parent == tmp_path / "xdg" / "minitransformer"  # the user's cache, by convention
    assert sorted(p.name for p in elsewhere.iterdir()) == ["demo_figures"]  # the figures asked for, nothing else
    assert not [p for p in installed.rglob("*") if p.suffix == ".txt" and "texts" not in p.parts]
