"""Encoding and decoding: known answers, losslessness, special tokens, errors, and parity with tiktoken."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitransformer.tokenizer import Tokenizer, split
from minitransformer.tokenizer.bpe import merge


def naive_encode(tok: Tokenizer, text: str) -> list[int]:
    """An independent encoder: replay the merges in training order on every chunk.

    Applying each merge everywhere, in rank order, is how training produced the
    tokens, so it must agree with encoding lowest-rank-first.
    """
    out = []
    for chunk in split(text, tok.pattern):
        ids = list(chunk.encode("utf-8"))
        for r, pair in enumerate(tok.merges):
            ids = merge(ids, pair, 256 + r)
        out.extend(ids)
    return out


def test_golden_wikipedia_encoding():
    tok = Tokenizer.train("aaabdaaabac", 259, pattern=r"[\s\S]+")
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"
    assert tok.vocab[258] == b"aaab" and tok.vocab_size == 259


def test_encoding_by_rank_equals_replaying_merges(tok, held_out, multilingual_text):
    for text in (held_out[:5000], multilingual_text):
        assert tok.encode_ordinary(text) == naive_encode(tok, text)


def test_encoding_the_training_text_reproduces_training(pydoc_text):
    text = pydoc_text[:20000]
    tok = Tokenizer.train(text, 600)
    # naive_encode replays training's own merge steps, so this is the training sequence
    ids = tok.encode(text)
    assert ids == naive_encode(tok, text)
    # and training was greedy: the encoded training text is much shorter than its bytes
    assert len(ids) < 0.5 * len(text.encode("utf-8"))


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "hello world",
        "   leading and trailing   ",
        "\n\n\t\r\n  \x0b\x0c mixed whitespace\n",
        "emoji 🎉👍🏽👩‍💻🏳️‍🌈🇫🇷",
        "CJK 東京都 한국어 日本語のテキスト",
        "combining e\u0301 a\u0308 Z\u0337\u0322a\u0338",
        "control \x00\x01\x07\x1b[31m red \x7f",
        "numbers 1234567890 3.14159 1e-10",
        "<|endoftext|> written as plain text",  # no special token unless allowed
        "\ufeffBOM and \u200b zero width",
    ],
)
def test_round_trip_examples(tok, text):
    ids = tok.encode_ordinary(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")


def test_round_trip_multilingual_corpus(tok, multilingual_text):
    assert tok.decode(tok.encode(multilingual_text)) == multilingual_text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_round_trip_is_lossless_for_every_valid_string(tok, text):
    assert tok.decode(tok.encode(text, disallowed_special=())) == text


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_round_trip_with_gpt2_pattern(text):
    tok = _gpt2_tok()
    assert tok.decode(tok.encode_ordinary(text)) == text


_GPT2 = {}


def _gpt2_tok():
    if not _GPT2:
        from minitransformer.training.data import load_corpus

        _GPT2["tok"] = Tokenizer.train(load_corpus("tiny") + load_corpus("multilingual"), 400, pattern="gpt2")
    return _GPT2["tok"]


def test_lone_surrogate_is_a_clear_error(tok):
    with pytest.raises(ValueError, match=r"'\\ud800' at index 3, a lone surrogate"):
        tok.encode("abc\ud800def")


def test_memo_does_not_change_results(tok, held_out):
    fresh = Tokenizer(tok.merges, tok.pattern)
    first = fresh.encode_ordinary(held_out[:3000])
    assert fresh.encode_ordinary(held_out[:3000]) == first == tok.encode_ordinary(held_out[:3000])


# ---------------------------------------------------------------- special tokens
def test_special_tokens_get_ids_after_the_merges(tok):
    assert tok.special_tokens == {"<|endoftext|>": 1024, "<|pad|>": 1025}
    assert tok.vocab_size == 1026 and tok.token_bytes(1024) == b"<|endoftext|>"


def test_special_token_in_user_text_is_an_error_unless_allowed(tok):
    text = "one<|endoftext|>two"
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>' at index 3.*allowed_special"):
        tok.encode(text)
    ids = tok.encode(text, allowed_special={"<|endoftext|>"})
    assert ids == tok.encode_ordinary("one") + [1024] + tok.encode_ordinary("two")
    assert tok.encode(text, allowed_special="all") == ids
    # encoded as plain text when explicitly not disallowed
    assert tok.encode(text, disallowed_special=()) == tok.encode_ordinary(text)
    assert tok.decode(ids) == text


def test_only_the_allowed_special_tokens_are_allowed(tok):
    text = "<|pad|><|endoftext|>"
    with pytest.raises(ValueError, match=r"<\|pad\|>"):
        tok.encode(text, allowed_special={"<|endoftext|>"})
    assert tok.encode(text, allowed_special="all") == [1025, 1024]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"allowed_special": {"<|nope|>"}}, "not special tokens of this tokenizer"),
        ({"allowed_special": "<|pad|>"}, "must be 'all' or a collection"),
    ],
)
def test_bad_special_arguments(tok, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tok.encode("x", **kwargs)


@pytest.mark.parametrize("specials, message", [(["a", "a"], "listed twice"), ([""], "non-empty"), ("<|x|>", "list of strings")])
def test_bad_special_token_definitions(specials, message):
    with pytest.raises(ValueError, match=message):
        Tokenizer(special_tokens=specials)


def test_encode_batch(tok):
    texts = ["a cat", "", "<|endoftext|>"]
    assert tok.encode_batch(texts, allowed_special="all") == [tok.encode(t, allowed_special="all") for t in texts]
    with pytest.raises(ValueError, match="list of strings"):
        tok.encode_batch("a cat")


# ---------------------------------------------------------------- decoding
def test_decode_accepts_numpy_arrays_and_names_bad_ids(tok):
    ids = tok.encode("hello world")
    assert tok.decode(np.array(ids, dtype=np.int64)) == "hello world"
    with pytest.raises(ValueError, match="unknown token id 5000 at position 1: this tokenizer's ids are 0..1025"):
        tok.decode([104, 5000])
    with pytest.raises(ValueError, match="unknown token id -1 at position 0"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="must be an int"):
        tok.decode([104.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        tok.decode(np.zeros((2, 2), dtype=int))
    with pytest.raises(ValueError, match="unknown token id 9999"):
        tok.token_bytes(9999)


def test_decode_errors_argument_handles_broken_utf8(tok):
    ids = list("é".encode("utf-8"))[:1]  # half of a two-byte character
    assert tok.decode(ids) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        tok.decode(ids, errors="strict")


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_stream_decoder_equals_decode_and_never_emits_broken_characters(text):
    tok = Tokenizer()  # bytes only: every multi-byte character is split across tokens
    d = tok.stream_decoder()
    pieces = [d.feed(i) for i in tok.encode_ordinary(text)]
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in text
    assert "".join(pieces) + d.flush() == text


def test_stream_decoder_flushes_an_incomplete_tail(tok):
    d = tok.stream_decoder()
    assert d.feed(0xF0) == "" and d.flush() == "\ufffd"
    assert d.feed(ord("a")) == "a"  # reset after flush


# ---------------------------------------------------------------- merges given by hand
def test_merges_must_only_use_existing_ids():
    with pytest.raises(ValueError, match=r"merge 0 \(256, 97\) uses an id that does not exist yet"):
        Tokenizer([(256, 97)])
    with pytest.raises(ValueError, match="must be a pair of two int ids"):
        Tokenizer([(97, 98, 99)])


# ---------------------------------------------------------------- production parity
def test_same_ids_as_tiktoken_given_the_same_ranks(tok, held_out, multilingual_text):
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {b: i for i, b in enumerate(tok.vocab[: 256 + len(tok.merges)])}
    enc = tiktoken.Encoding("mt", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens)
    for text in (held_out, multilingual_text, "<|endoftext|> hi"):
        assert enc.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")


def test_same_chunks_as_gpt2_and_cl100k_patterns_in_tiktoken(multilingual_text, held_out):
    tiktoken = pytest.importorskip("tiktoken")
    # A bytes-only vocabulary makes every token one byte, so the chunking is all that could differ:
    # compare our split with tiktoken's by encoding with a single merge that never applies.
    for name, ours in (("gpt2", "gpt2"), ("cl100k_base", "gpt4")):
        tok = Tokenizer(pattern=ours)
        ranks = {bytes([b]): b for b in range(256)}
        enc = tiktoken.Encoding(name + "-bytes", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens={})
        for text in (multilingual_text, held_out[:5000]):
            assert enc.encode_ordinary(text) == tok.encode_ordinary(text)


def test_decode_accepts_numpy_integer_scalars(tok):
    ids = np.array(tok.encode("hello"), dtype=np.int32)
    assert tok.decode(list(ids)) == "hello"  # a list of np.int32, as iterating an array gives
    with pytest.raises(ValueError, match="must be an int"):
        tok.decode([True])
