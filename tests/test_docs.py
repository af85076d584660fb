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
