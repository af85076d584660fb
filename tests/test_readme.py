"""The README promises two set-up commands and a stages table; keep them true."""

import re
from pathlib import Path

from minitransformer.concepts import STAGES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def setup_commands() -> list[str]:
    section = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_exactly_two_setup_commands_demo_and_tests():
    demo, tests = setup_commands()
    assert demo.endswith("minitransformer demo")
    assert "pytest" in tests and '".[test]"' in tests


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert setup_commands()[1] in ci.splitlines()


def test_stages_table_matches_concepts():
    table = README.split("<!-- stages-table")[1].split("<!-- /stages-table -->")[0]
    rows = [line for line in table.splitlines() if re.match(r"\| \d ", line)]
    expected = [f"| {s.number} | {s.name} | `{s.module}` | {s.concept} | {s.question} | "
                f"[`{s.notebook}`](notebooks/{s.notebook}) |" for s in STAGES]
    assert rows == expected


def test_extras_named_in_readme_exist_in_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for extra in ("notebooks", "test", "bench"):
        assert re.search(rf"^{extra} = \[", pyproject, re.M)


def test_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.+?)\n```", README, re.S)
    blocks = [b for b in blocks if not b.startswith("# (needs")]  # those need torch/transformers
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)  # the examples write tok.json etc. into the current directory
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "[4096]" in out and "not allowed" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tok.json", "tok.tiktoken", "tok.vocab"]


def test_local_links_and_images_exist():
    for target in re.findall(r"\]\(([^)#:]+)\)", README):  # relative links, not URLs
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
