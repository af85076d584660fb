"""Tokenizer files: JSON round trip, validation of every field, vocab listing, .tiktoken export."""

import base64
import json
import os

import pytest

from minitransformer.core.fileio import atomic_write
from minitransformer.tokenizer import Tokenizer
from minitransformer.tokenizer.files import FORMAT, VERSION, render_token, vocab_listing


def test_save_load_round_trip(tok, tmp_path, held_out):
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = Tokenizer.load(path)
    assert loaded == tok
    assert loaded.encode(held_out[:2000]) == tok.encode(held_out[:2000])
    assert loaded.special_tokens == tok.special_tokens and loaded.vocab == tok.vocab


def test_file_is_readable_json_with_one_merge_per_line(tok, tmp_path):
    path = tmp_path / "tok.json"
    tok.save(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert data["format"] == FORMAT and data["version"] == VERSION
    assert data["pattern_name"] == "gpt4" and data["pattern"] == tok.pattern
    assert data["merges"] == [list(m) for m in tok.merges]
    a, b = tok.merges[0]
    assert f"\n    [{a}, {b}],\n" in text
    assert len(text.splitlines()) > len(tok.merges)


def test_custom_pattern_and_empty_tokenizer_round_trip(tmp_path):
    for t in (Tokenizer(), Tokenizer([(97, 98)], pattern=r"\w+|\W+", special_tokens=["<s>"])):
        t.save(tmp_path / "t.json")
        assert Tokenizer.load(tmp_path / "t.json") == t


def _write(tmp_path, data):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


GOOD = {"format": FORMAT, "version": VERSION, "pattern_name": "gpt4", "pattern": "gpt4", "special_tokens": {}, "merges": [[97, 98]]}


@pytest.mark.parametrize(
    "change, message",
    [
        ("{not json", "malformed JSON"),
        ({"format": "other"}, '"format" must be'),
        ({"version": 99}, "format version 99 is not supported"),
        ({"merges": "abc"}, '"merges" must be a list'),
        ({"pattern": None}, '"pattern" must be a str'),
        ({"merges": [[97, 98, 99]]}, "merge 0 must be a pair"),
        ({"merges": [[300, 98]]}, "does not exist yet"),
        ({"merges": [[97.0, 98]]}, "merge 0 must be a pair of two int ids"),
        ({"special_tokens": {"<s>": 5}}, r"must have the ids \[257\]"),
        ({"pattern": "(a)"}, "capturing groups"),
        ({"pattern_name": "gpt2"}, "is not the built-in 'gpt2' pattern"),
    ],
)
def test_malformed_files_get_clear_errors(tmp_path, change, message):
    data = change if isinstance(change, str) else {**GOOD, **change}
    if data is not change and data.get("pattern") == "gpt4":
        data["pattern"] = Tokenizer().pattern
    with pytest.raises(ValueError, match=message):
        Tokenizer.load(_write(tmp_path, data))


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ValueError, match="no tokenizer file at"):
        Tokenizer.load(tmp_path / "nope.json")
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="not UTF-8"):
        Tokenizer.load(path)
    with pytest.raises(ValueError, match="is a folder, not a tokenizer file; give the tokenizer.json inside it"):
        Tokenizer.load(tmp_path)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not a valid tokenizer file: its JSON is nested too deeply"):
        Tokenizer.load(deep)


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write(path, "first")

    class Boom(str):
        def encode(self, *args):  # fail in the middle of producing the payload
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, Boom("second"))
    assert path.read_text() == "first"
    assert os.listdir(tmp_path) == ["out.txt"]  # no temporary file left behind
    with pytest.raises(ValueError, match="does not exist; create it first"):
        atomic_write(tmp_path / "no" / "dir.txt", "x")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ValueError, match="adir: it is a folder; give the path of a file"):
        atomic_write(tmp_path / "adir", "x")


def test_atomic_write_errors_name_the_file_asked_for(tmp_path, monkeypatch):
    import errno
    import tempfile

    def read_only(prefix, suffix, dir):
        raise OSError(errno.EROFS, "Read-only file system", os.path.join(dir, prefix + "x1y2" + suffix))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as err:
        atomic_write(tmp_path / "tok.json", "x")
    assert err.value.filename == str(tmp_path / "tok.json") and err.value.errno == errno.EROFS
    assert "Read-only file system" in str(err.value) and ".tmp" not in str(err.value)


def test_vocab_listing_shows_each_merge_and_its_parts(tok, tmp_path):
    listing = vocab_listing(tok)
    lines = listing.splitlines()
    assert len(lines) == 2 + tok.vocab_size
    a, b = tok.merges[0]
    assert lines[2 + 256] == f"256\t[{render_token(tok.vocab[256])}]\t<- [{render_token(tok.vocab[a])}] + [{render_token(tok.vocab[b])}]"
    assert lines[-1] == "1025\t[<|pad|>]\tspecial"
    assert lines[2 + 10] == "10\t[\\n]"  # control bytes are escaped, not printed raw
    tok.save_vocab(tmp_path / "v.txt")
    assert (tmp_path / "v.txt").read_text(encoding="utf-8") == listing


def test_tiktoken_export_format(tok, tmp_path):
    path = tmp_path / "tok.tiktoken"
    tok.export_tiktoken(path)
    lines = path.read_text().splitlines()
    assert len(lines) == 256 + len(tok.merges)  # special tokens are not ranks
    parsed = {base64.b64decode(t): int(r) for t, r in (line.split() for line in lines)}
    assert parsed == {b: i for i, b in enumerate(tok.vocab[:1024])}


def test_tiktoken_loads_the_export_and_encodes_identically(tok, tmp_path, held_out):
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    path = tmp_path / "tok.tiktoken"
    tok.export_tiktoken(path)
    enc = tiktoken.Encoding("mt", pat_str=tok.pattern, mergeable_ranks=load_tiktoken_bpe(str(path)), special_tokens={})
    assert enc.encode_ordinary(held_out) == tok.encode_ordinary(held_out)


def test_tiktoken_export_refuses_duplicate_tokens(tmp_path):
    # (a, bc) and (ab, c) both spell "abc": valid BPE merges, but not valid tiktoken ranks
    tok = Tokenizer([(98, 99), (97, 98), (97, 256), (257, 99)])
    with pytest.raises(ValueError, match="tokens 258 and 259 have the same bytes b'abc'"):
        tok.export_tiktoken(tmp_path / "dup.tiktoken")
    assert not (tmp_path / "dup.tiktoken").exists()


def test_atomic_write_gives_files_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644
