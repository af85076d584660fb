"""The guides in docs/ run as written."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_extending_guide_runs(tmp_path, monkeypatch, capsys):
    from minitransformer.core import registry

    text = (DOCS / "extending.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.+?)\n```", text, re.S)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    try:
        for block in blocks:  # one namespace: the guide builds on its earlier steps
            exec(compile(block, "docs/extending.md", "exec"), namespace)
        out = capsys.readouterr().out
        assert "all passed" in out and "alibi" in out and "unigram" in out
        assert "FAILED" not in out and "rope500_half: loss" in out
    finally:
        for name in ("alibi", "rope500_half"):
            if name in registry.names("positional"):
                registry.unregister("positional", name)


def test_interop_guide_runs(tmp_path, monkeypatch, capsys):
    """The numpy blocks always; the block that loads the export in transformers when it is installed."""
    import importlib.util

    text = (DOCS / "interop.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.+?)\n```", text, re.S)
    assert len(blocks) == 2 and "transformers" in blocks[1]
    has_peers = all(importlib.util.find_spec(m) for m in ("torch", "transformers"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks if has_peers else blocks[:1]:
        exec(compile(block, "docs/interop.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "['config.json', 'model.safetensors']" in out
    if has_peers:
        assert "LlamaForCausalLM" in out and float(out.split()[-1]) < 1e-4


def _run_guide(name: str, tmp_path, monkeypatch) -> None:
    text = (DOCS / name).read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.+?)\n```", text, re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], f"docs/{name}", "exec"), {})


def test_mla_guide_runs(tmp_path, monkeypatch, capsys):
    _run_guide("mla.md", tmp_path, monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["True True", "80 12", "576 2.25 70272 187107328"]  # the figures the guide quotes


def test_scaleout_guide_runs(tmp_path, monkeypatch, capsys):
    _run_guide("scaleout.md", tmp_path, monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in lines[:5]] == [  # ISCA Table 3: name, endpoints, switches, links
        ["FT2", "2,048", "96", "2,048"], ["MPFT", "16,384", "768", "16,384"], ["FT3", "65,536", "5,120", "131,072"],
        ["SF", "32,928", "1,568", "32,928"], ["DF", "261,632", "16,352", "384,272"]]
    assert lines[5] == "{'ecmp': 4.0, 'static': 1.0, 'adaptive': 1.0, 'spray': 1.0}"
    per_expert, dedup = map(float, lines[6].split())
    assert per_expert > 7 and dedup <= 4
    assert lines[7:] == ["[3]", "120.96 14.76"]
