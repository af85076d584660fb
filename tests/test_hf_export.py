"""Tokenizer export to Hugging Face `tokenizers` JSON, and parity of the production tokenizers with ours.

The parity tests load our exported files (``tokenizer.json`` and ``.tiktoken``)
in the production libraries and compare ids on held-out and multilingual text;
they are skipped when ``tokenizers`` / ``tiktoken`` are not installed.
"""

import doctest
import json

import pytest

from minitransformer.tokenizer import Tokenizer
from minitransformer.interop import hf_tokenizer as hf_export
from minitransformer.interop.hf_tokenizer import bytes_to_unicode, export_hf_tokenizer, to_hf_dict, token_string

SPECIAL_TEXT = "first<|endoftext|>second <|pad|>\n<|endoftext|>"


@pytest.fixture(scope="module")
def gpt2_tok(pydoc_text) -> Tokenizer:
    """A tokenizer with the GPT-2 split pattern (the session's ``tok`` has the GPT-4 one)."""
    from minitransformer.training.data import split_text

    return Tokenizer.train(split_text(pydoc_text)[0], 1024, pattern="gpt2", special_tokens=["<|endoftext|>"])


def test_docstring_examples():
    result = doctest.testmod(hf_export)
    assert result.failed == 0 and result.attempted > 0


def test_bytes_to_unicode_is_gpt2s_table():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256  # a bijection
    assert not any(ch.isspace() for ch in table.values())  # so a token string never holds a space
    assert all(table[b] == chr(b) for b in b"!~\xa1\xac\xae\xff" + b"azAZ09")
    # the first shifted bytes, and two famous ones
    assert [table[b] for b in (0, 1, 0x20, 0x0A, 0x7F, 0xA0, 0xAD)] == \
        ["\u0100", "\u0101", "Ġ", "Ċ", "\u0121", "\u0142", "\u0143"]
    assert token_string("é".encode()) == "Ã©"


def test_dict_layout(tok):
    data = to_hf_dict(tok)
    model = data["model"]
    assert model["type"] == "BPE" and model["unk_token"] is None
    assert len(model["vocab"]) == 256 + len(tok.merges) and sorted(model["vocab"].values()) == list(range(1024))
    assert len(model["merges"]) == len(tok.merges)
    a, b = tok.merges[0]
    assert model["merges"][0] == f"{token_string(tok.vocab[a])} {token_string(tok.vocab[b])}"
    assert all(m.count(" ") == 1 for m in model["merges"])
    assert [(t["content"], t["id"], t["special"]) for t in data["added_tokens"]] == [
        ("<|endoftext|>", 1024, True), ("<|pad|>", 1025, True)]
    split = data["pre_tokenizer"]["pretokenizers"][0]
    assert split["pattern"]["Regex"] == tok.pattern and split["behavior"] == "Isolated"


def test_export_writes_json_atomically(tok, tmp_path):
    path = export_hf_tokenizer(tok, tmp_path / "tokenizer.json")
    assert json.loads(path.read_text(encoding="utf-8")) == to_hf_dict(tok)
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]
    with pytest.raises(ValueError, match="directory .* does not exist"):
        export_hf_tokenizer(tok, tmp_path / "absent" / "tokenizer.json")
    with pytest.raises(ValueError, match="takes a Tokenizer"):
        export_hf_tokenizer(to_hf_dict(tok), tmp_path / "t.json")


def test_duplicate_tokens_are_refused(tmp_path):
    # "abc" made twice: ab + c and a + bc
    tok = Tokenizer([(97, 98), (256, 99), (98, 99), (97, 258)], pattern="gpt2")
    with pytest.raises(ValueError, match="tokens 257 and 259 have the same bytes b'abc'"):
        export_hf_tokenizer(tok, tmp_path / "t.json")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- parity with the production tokenizers
@pytest.mark.parametrize("which", ["gpt4", "gpt2"])
def test_hf_tokenizers_gives_our_ids(which, tok, gpt2_tok, held_out, multilingual_text, tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    ours = tok if which == "gpt4" else gpt2_tok
    hf = tokenizers.Tokenizer.from_file(str(export_hf_tokenizer(ours, tmp_path / "tokenizer.json")))
    for name, text in (("held-out", held_out), ("multilingual", multilingual_text)):
        ids = hf.encode(text, add_special_tokens=False).ids
        assert ids == ours.encode(text), f"{which} pattern, {name} text"
        assert hf.decode(ids) == text
    special = SPECIAL_TEXT if which == "gpt4" else SPECIAL_TEXT.replace("<|pad|>", "")
    ids = hf.encode(special, add_special_tokens=False).ids
    assert ids == ours.encode(special, allowed_special="all")
    assert hf.decode(ids, skip_special_tokens=False) == special


def test_production_tokenizers_load_our_files_and_agree(tok, held_out, multilingual_text, tmp_path):
    """Both exports in their production libraries, three-way: tiktoken, tokenizers and ours."""
    tiktoken = pytest.importorskip("tiktoken")
    tokenizers = pytest.importorskip("tokenizers")
    from tiktoken.load import load_tiktoken_bpe

    tok.export_tiktoken(tmp_path / "tok.tiktoken")
    export_hf_tokenizer(tok, tmp_path / "tokenizer.json")
    tt = tiktoken.Encoding("minitransformer", pat_str=tok.pattern,
                           mergeable_ranks=load_tiktoken_bpe(str(tmp_path / "tok.tiktoken")),
                           special_tokens=tok.special_tokens)
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in (held_out, multilingual_text):
        ours = tok.encode(text)
        assert tt.encode(text) == ours
        assert hf.encode(text, add_special_tokens=False).ids == ours
    assert tt.encode(SPECIAL_TEXT, allowed_special="all") == tok.encode(SPECIAL_TEXT, allowed_special="all")


def test_transformers_fast_tokenizer_reads_the_file(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    path = export_hf_tokenizer(tok, tmp_path / "tokenizer.json")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token="<|endoftext|>")
    text = "def f(x):\n    return x  # 👋 naïve"
    assert fast(text)["input_ids"] == tok.encode(text)
    assert fast.eos_token_id == tok.special_tokens["<|endoftext|>"]
    assert fast.decode(tok.encode(text)) == text


def test_the_handoff_export_writes_the_tokenizer_beside_the_weights(tmp_path, capsys):
    # one command gives transformers all it needs to generate: weights, config with eos_token_id, tokenizer
    from minitransformer.core.config import ModelConfig
    from minitransformer.interop.handoff import main
    from minitransformer.model import GPT
    from minitransformer.training import save_model
    from minitransformer.training.data import load_corpus

    tok = Tokenizer.train(load_corpus("tiny"), 299, special_tokens=["<|endoftext|>"])  # 300 ids, as the model
    model = GPT(ModelConfig.preset("toy", vocab_size=300), seed=0)
    save_model(tmp_path / "model.npz", model, tokenizer=tok)
    tok.save(tmp_path / "tokenizer.json")
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(tmp_path / "model.npz"), "--tokenizer", str(tmp_path / "tokenizer.json"),
                 "--format", "gpt2", "--out", str(out)]) == 0
    assert "(with its tokenizer.json)" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["eos_token_id"] == tok.special_tokens["<|endoftext|>"] == 299
    assert json.loads((out / "tokenizer.json").read_text()) == to_hf_dict(tok)
    other = Tokenizer.train(load_corpus("multilingual"), 299, special_tokens=["<|endoftext|>"])
    other.save(tmp_path / "other.json")
    assert main(["export", "--checkpoint", str(tmp_path / "model.npz"), "--tokenizer", str(tmp_path / "other.json"),
                 "--out", str(tmp_path / "hf2")]) == 2
    assert "the tokenizer is not the one" in capsys.readouterr().err and not (tmp_path / "hf2").exists()
