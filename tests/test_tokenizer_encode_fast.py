"""The fast encoder (numpy sweeps over all new chunks, ``re`` split) against the reference, and tiktoken."""

import doctest

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minitransformer.training.data import load_corpus
from minitransformer.tokenizer import Tokenizer, encode_fast, split_fast
from minitransformer.tokenizer.bpe import merge
from minitransformer.tokenizer.encode_fast import FastEncoder, leftmost_non_overlapping, merge_sweeps
from minitransformer.tokenizer.patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from minitransformer.tokenizer.split_fast import STAND_INS, bmp_class_body, fast_splitter, stand_in

VALID_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
# Pieces that the trained tokenizer has merges for, so random text made of them merges a lot.
PIECES = ["the", " the", "a", "aa", " ", "  ", "\n", "\r\n", "'s", "'LL", "ing", "é", "Straße", "東京",
          "👋🏽", "🇫🇷", "1234", "3.14", "()", "::", "\t", "ab", "ba", "z"]
PIECED_TEXT = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)


@pytest.fixture(scope="module", autouse=True)
def sweeps_for_every_call():
    """Send even the smallest calls through the numpy sweeps (not the per-chunk loop), so they are what is tested."""
    saved, encode_fast.SMALL_CALL = encode_fast.SMALL_CALL, 0
    yield
    encode_fast.SMALL_CALL = saved


def both(tok: Tokenizer, text: str, **kwargs) -> tuple[list[int], list[int]]:
    """Encode ``text`` with each path, each on a fresh copy (so no memo is shared)."""
    fresh = lambda: Tokenizer(tok.merges, tok.pattern, tok.special_tokens)  # noqa: E731
    return fresh().encode(text, impl="reference", **kwargs), fresh().encode(text, impl="fast", **kwargs)


def replay(tok: Tokenizer, chunk: str) -> list[int]:
    """An independent answer: apply every merge, in training order, to the chunk's bytes."""
    ids = list(chunk.encode("utf-8"))
    for r, pair in enumerate(tok.merges):
        ids = merge(ids, pair, 256 + r)
    return ids


@pytest.fixture(scope="module")
def runs_tok() -> Tokenizer:
    """A tokenizer whose merges build long runs of one character ('aa', 'aaaa', 'aaa', ...)."""
    text = " ".join("a" * n for n in (2, 3, 4, 5, 7, 8, 9, 16, 17, 33)) + " " + " " * 40 + "\n" + "ab" * 30
    return Tokenizer.train(text * 3, 300)


# ---------------------------------------------------------------- fast == reference
def test_fast_equals_reference_on_corpora(tok, held_out, multilingual_text):
    for text in (held_out, multilingual_text, load_corpus("tiny")):
        ref, fast = both(tok, text)
        assert fast == ref
    assert tok.decode(fast) == text


@settings(max_examples=200, deadline=None)
@given(st.one_of(VALID_TEXT, PIECED_TEXT))
def test_fast_equals_reference_on_random_text(tok, text):
    ref, fast = both(tok, text, disallowed_special=())
    assert fast == ref


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=120))
def test_fast_equals_reference_on_bytes_like_text(tok, raw):
    text = raw.decode("latin-1")  # every byte value as a character, control characters included
    ref, fast = both(tok, text, disallowed_special=())
    assert fast == ref


@pytest.mark.parametrize(
    "text",
    ["", "a", "aaa", "a" * 5, "a" * 64 + "b", " " * 1000, "ab" * 3000, "a" * 20_000, "😀" * 500,
     "\n" * 300 + "x", "1" * 999, "'s'S'll" * 50],
)
def test_repeated_characters_and_huge_chunks(runs_tok, text):
    ref, fast = both(runs_tok, text)
    assert fast == ref
    if len(text) < 100:  # the slow replay on the short ones only
        assert ref == [i for chunk in runs_tok._regex.findall(text) for i in replay(runs_tok, chunk)]


@pytest.mark.parametrize("n", range(1, 70))
def test_overlapping_equal_pairs_merge_leftmost_first(runs_tok, n):
    ref, fast = both(runs_tok, "a" * n)
    assert fast == ref == replay(runs_tok, "a" * n)


def test_special_tokens_and_custom_patterns(tok):
    text = "<|endoftext|>one <|pad|>two<|endoftext|>"
    ref, fast = both(tok, text, allowed_special="all")
    assert fast == ref and fast[0] == 1024 and fast[-1] == 1024
    wiki = Tokenizer.train("aaabdaaabac", 259, pattern=r"[\s\S]+")  # custom pattern: the regex split
    assert wiki.encode("aaabdaaabac", impl="fast") == [258, 100, 258, 97, 99]


def test_batches_of_new_chunks_give_the_same_ids(tok, held_out, monkeypatch):
    whole = Tokenizer(tok.merges, tok.pattern).encode_ordinary(held_out[:20000])
    monkeypatch.setattr(encode_fast, "BATCH_BYTES", 100)  # many small batches, and chunks longer than one
    assert Tokenizer(tok.merges, tok.pattern).encode_ordinary(held_out[:20000]) == whole
    assert Tokenizer(tok.merges, tok.pattern).encode_ordinary("x" * 1000 + " y") == \
        Tokenizer(tok.merges, tok.pattern).encode_ordinary("x" * 1000 + " y", impl="reference")


@pytest.mark.parametrize("n_chunks", [1, 39, 40, 41, 200])
def test_small_calls_take_the_per_chunk_loop_with_the_same_ids(tok, held_out, monkeypatch, n_chunks):
    monkeypatch.setattr(encode_fast, "SMALL_CALL", 40)  # the default: fewer new chunks go one at a time
    chunks = sorted(set(tok._regex.findall(held_out)))[:n_chunks]
    calls = []

    def one_chunk(data):
        calls.append(data)
        return tok._encode_chunk(data)

    small = FastEncoder(tok.ranks, tok.pattern, one_chunk=one_chunk).encode_chunks(chunks)
    assert len(calls) == (n_chunks if n_chunks < 40 else 0)
    assert small == FastEncoder(tok.ranks, tok.pattern).encode_chunks(chunks)  # the sweeps
    assert small == [replay(tok, c) for c in chunks]


def test_paths_share_one_memo_and_bad_impl_is_named(tok):
    t = Tokenizer(tok.merges, tok.pattern)
    a = t.encode_ordinary("memo me", impl="fast")
    assert t.encode_ordinary("memo me", impl="reference") == a
    with pytest.raises(ValueError, match=r"impl='numpy' is not valid; choose one of 'fast', 'reference'"):
        t.encode("x", impl="numpy")
    with pytest.raises(ValueError, match="lone surrogate"):
        t.encode("ok \ud83d", impl="fast")


# ---------------------------------------------------------------- the sweeps themselves
def test_merge_sweeps_by_hand():
    # merges: (a, a) -> 256, (256, a) -> 257, (b, c) -> 258
    enc = FastEncoder({(97, 97): 256, (256, 97): 257, (98, 99): 258}, GPT4_SPLIT_PATTERN)
    flat = np.frombuffer(b"aaaabcab", dtype=np.uint8)
    out, counts = merge_sweeps(flat, np.array([4, 2, 1, 1]), enc.table)
    assert counts.tolist() == [2, 1, 1, 1]
    assert out[:2].tolist() == [256, 256] and out[4] == 258 and out[6] == 97 and out[7] == 98


@given(st.lists(st.integers(0, 40), unique=True).map(sorted))
@settings(deadline=None)  # wall-clock deadlines fail on a busy machine, not on a wrong answer
def test_leftmost_non_overlapping_equals_a_scan(positions):
    kept, last = [], -2
    for p in positions:  # a left-to-right scan: a merge at p uses up p + 1
        if p > last + 1:
            kept.append(p)
            last = p
    assert leftmost_non_overlapping(np.array(positions, dtype=np.int64)).tolist() == kept


# ---------------------------------------------------------------- the re split
@pytest.mark.parametrize("kind, source", [("L", r"\p{L}"), ("N", r"\p{N}"), ("s", r"\s")])
def test_re_classes_equal_regex_classes_on_every_bmp_code_point(kind, source):
    import re

    every = "".join(map(chr, range(0x10000)))
    ours = [m.start() for m in re.finditer(f"[{bmp_class_body(kind)}]", every)]
    assert ours == [m.start() for m in regex.finditer(source, every)]


def test_stand_ins_behave_like_every_character_beyond_the_bmp():
    beyond = "".join(map(chr, range(0x10000, 0x110000)))

    def mask(atom):  # (n,) which characters beyond the BMP the atom matches
        m = np.zeros(len(beyond), dtype=bool)
        m[[h.start() for h in regex.finditer(atom, beyond)]] = True
        return m

    letters, numbers = mask(r"\p{L}"), mask(r"\p{N}")
    kinds = {"L": letters, "N": numbers, "other": ~letters & ~numbers}
    for atom in (r"\p{L}", r"\p{N}", r"\s", r"[\r\n]", "'", " ", "(?i:[sdmtlvre])"):  # all the patterns test
        hits = mask(atom)
        for kind, members in kinds.items():  # a kind matches an atom all or nothing, like its stand-in
            expected = bool(regex.match(atom, STAND_INS[kind]))
            assert (hits[members] == expected).all(), (atom, kind)
    assert stand_in("\U0001d400") == STAND_INS["L"] and stand_in("\U0001f44b") == STAND_INS["other"]


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN])
def test_fast_split_equals_regex_split_on_every_code_point(pattern):
    split = fast_splitter(pattern)
    if split is None:
        pytest.skip("this Python's re has no possessive quantifiers (needs 3.11)")
    # every BMP code point but the surrogates, and every 37th beyond (those go through their stand-ins)
    every = [chr(c) for c in (*range(0xD800), *range(0xE000, 0x10000), *range(0x10000, 0x110000, 37))]
    for glue in ("", " ", "a", "1", "'", "\n", " \r\n"):  # each code point among different neighbours
        text = glue.join(every)
        assert split(text) == regex.findall(pattern, text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(VALID_TEXT, PIECED_TEXT))
def test_fast_split_equals_regex_split_on_random_text(text):
    for pattern in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN):
        split = fast_splitter(pattern)
        assert split is None or split(text) == regex.findall(pattern, text)


@settings(max_examples=200, deadline=None)
@given(st.one_of(VALID_TEXT, PIECED_TEXT, st.text(alphabet="ab 1'\n😀ß", max_size=60)))
def test_text_splits_the_same_cut_at_safe_cuts(text):
    # the claim the stand-in stretches rely on: a space after an ASCII letter is a cut that changes nothing
    cuts = [0] + [m.start() + 1 for m in regex.finditer(r"(?=[A-Za-z] )", text)] + [len(text)]
    for pattern in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN):
        pieces = [c for a, b in zip(cuts, cuts[1:]) for c in regex.findall(pattern, text[a:b])]
        assert pieces == regex.findall(pattern, text)


@pytest.mark.parametrize(
    "text",
    ["😀", "a 😀 b", "😀 a b c", "abc def 😀", "1 2 😀 3 4", "x\n😀\ny z", "😀😀 a b 😀", "no cut😀at all",
     "a b 𝐀𝐁 c d 𝟏𝟐 e f 🇫🇷 g", "𝐀 " * 50, " a" * 30 + "😀" + "b " * 30],
)
def test_fast_split_around_characters_beyond_the_bmp(text):
    for pattern in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN):
        split = fast_splitter(pattern)
        assert split is None or split(text) == regex.findall(pattern, text)


def test_custom_patterns_keep_the_regex_split():
    assert fast_splitter(r"\w+|\W") is None


@pytest.mark.parametrize("module", [encode_fast, split_fast])
def test_docstring_examples(module):
    assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------- production parity
def _tiktoken_for(tok: Tokenizer):
    tiktoken = pytest.importorskip("tiktoken", reason="tiktoken is an optional peer (pip install '.[bench]')")
    ranks = {b: i for i, b in enumerate(tok.vocab[: 256 + len(tok.merges)])}
    return tiktoken.Encoding("mt", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=tok.special_tokens)


def test_fast_path_equals_tiktoken(tok, held_out, multilingual_text):
    enc = _tiktoken_for(tok)
    for text in (held_out, multilingual_text, "<|endoftext|> hi", "a" * 100, " " * 77 + "x"):
        assert Tokenizer(tok.merges, tok.pattern, tok.special_tokens).encode(text, allowed_special="all") == \
            enc.encode(text, allowed_special="all")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 9, 17, 33, 34, 65])
def test_repeated_characters_merge_as_in_tiktoken(runs_tok, n):
    enc = _tiktoken_for(runs_tok)
    for text in ("a" * n, " " + "a" * n, " " * n, "ab" * n):
        ref, fast = both(runs_tok, text)
        assert ref == fast == enc.encode_ordinary(text)


@settings(max_examples=100, deadline=None)
@given(st.one_of(VALID_TEXT, PIECED_TEXT))
def test_fast_path_equals_tiktoken_on_random_text(tok, text):
    enc = _tiktoken_for(tok)
    assert Tokenizer(tok.merges, tok.pattern).encode_ordinary(text) == enc.encode_ordinary(text)
