import platform
from pathlib import Path

import pytest

from minitransformer.training import data


def test_pydoc_corpus_is_built_into_the_cache_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITRANSFORMER_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    path = data.corpus_path("pydoc")
    assert path == tmp_path / "cache" / f"pydoc_topics-python{platform.python_version()}.txt" and path.exists()
    text = data.load_corpus("pydoc")
    assert text == data.build_pydoc_corpus()
    assert len(text) > 100_000 and "The \"if\" statement" in text
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cache", path.name]  # nothing else, no temporary files
    assert not list(data.data_dir().glob("pydoc*"))  # never into the package


@pytest.mark.parametrize("platform_, env, expected", [
    ("linux", {"XDG_CACHE_HOME": "/x/cache"}, "/x/cache/minitransformer"),
    ("linux", {}, "~/.cache/minitransformer"),
    ("darwin", {}, "~/Library/Caches/minitransformer"),
    ("win32", {"LOCALAPPDATA": "C:/Users/a/AppData/Local"}, "C:/Users/a/AppData/Local/minitransformer"),
])
def test_cache_directory_follows_the_platform(monkeypatch, platform_, env, expected):
    for name in ("MINITRANSFORMER_CACHE", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(data.sys, "platform", platform_)
    assert data.cache_dir() == Path(expected).expanduser()
    monkeypatch.setenv("MINITRANSFORMER_CACHE", "/elsewhere")
    assert data.cache_dir() == Path("/elsewhere")


def test_an_unwritable_cache_names_the_variable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MINITRANSFORMER_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(OSError, match="cannot write the corpus cache .* set MINITRANSFORMER_CACHE"):
        data.corpus_path("pydoc")


def test_small_texts_written_for_the_project(multilingual_text):
    tiny = data.load_corpus("tiny")
    assert "merges" in tiny
    assert "\r\n" in multilingual_text  # read without newline translation
    for sample in ("中文", "🇫🇷", "e\u0301", "한국어", "עברית", "हिन्दी"):
        assert sample in multilingual_text


def test_split_text_cuts_at_a_line_break():
    text = "line one\nline two\nline three\nline four\n"
    train, held = data.split_text(text, 0.5)
    assert train + held == text and train.endswith("\n") and held == "line four\n"  # the cut (index 19) falls inside "line three"
    with pytest.raises(ValueError, match="between 0 and 1"):
        data.split_text(text, 1.5)


def test_unknown_corpus_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid corpora are pydoc"):
        data.load_corpus("wikipedia")


def test_missing_small_text_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MINITRANSFORMER_DATA", str(tmp_path))
    with pytest.raises(ValueError, match="MINITRANSFORMER_DATA"):
        data.load_corpus("tiny")


def test_corpus_tokens_trains_the_model_sized_tokenizer_and_falls_back_on_small_corpora():
    big = data.corpus_tokens("pydoc", 300, context=64)
    assert big.held_out and big.tokenizer.vocab_size == 300
    train_text, val_text = data.split_text(data.load_corpus("pydoc"))
    assert big.val.tolist() == big.tokenizer.encode_ordinary(val_text) and big.train.dtype.kind == "i"
    small = data.corpus_tokens("tiny", 300, context=128, tokenizer=big.tokenizer)
    assert small.tokenizer is big.tokenizer and not small.held_out and small.val is small.train


def test_a_damaged_corpus_cache_is_rebuilt_not_trained_on(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MINITRANSFORMER_CACHE", str(tmp_path / "cache"))
    path = data.corpus_path("pydoc")
    whole = path.read_bytes()
    for damaged in (whole[:100_000], b"", whole.replace(b"statement", b"sentence", 1)):  # truncated, emptied, edited
        path.write_bytes(damaged)
        assert data.load_corpus("pydoc") == data.build_pydoc_corpus()
        assert path.read_bytes() == whole
        assert f"the corpus cache {path} differs from Python's pydoc topics; rebuilt it" in capsys.readouterr().err
    data.load_corpus("pydoc")  # whole: nothing to say
    assert capsys.readouterr().err == ""


def test_a_cache_variable_that_names_a_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MINITRANSFORMER_CACHE", str(tmp_path / "file"))
    with pytest.raises(ValueError, match="the cache folder .*file is a file; set MINITRANSFORMER_CACHE to a folder"):
        data.corpus_path("pydoc")
