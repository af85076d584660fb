"""Both trainers: known answers, the tie rule, and equality of the fast trainer with the reference."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minitransformer.tokenizer import Tokenizer, TrainProgress, train_fast, train_reference
from minitransformer.tokenizer.bpe import count_pairs, merge

WHOLE = r"[\s\S]+"  # a pattern that keeps the whole text as one chunk
TRAINERS = [train_reference, train_fast]


@pytest.mark.parametrize("train", TRAINERS)
def test_wikipedia_example(train):
    # https://en.wikipedia.org/wiki/Byte_pair_encoding: aaabdaaabac -> ZabdZabac -> ... -> XdXac
    result = train("aaabdaaabac", 256 + 3, pattern=WHOLE)
    assert result.merges == [(97, 97), (256, 97), (257, 98)]
    assert result.counts == [4, 2, 2]
    assert Tokenizer(result.merges, WHOLE).encode("aaabdaaabac") == [258, 100, 258, 97, 99]


@pytest.mark.parametrize("train", TRAINERS)
def test_tie_goes_to_the_pair_seen_first_in_the_current_sequence(train):
    # "cd" and "ab" both occur twice; "cd" occurs first, so it wins although "ab" < "cd".
    assert train("cdab cdab", 257, pattern=WHOLE).merges == [(ord("c"), ord("d"))]
    # After merging "xy" (3 times), "Xa" and "aX"... the first occurrence is measured
    # in the merged sequence: in "axyxyaxy", pairs (a, xy) at 0 and (xy, a) at 2 tie at 2,
    # and (a, xy) is first.
    merges = train("axyxyaxy", 258, pattern=WHOLE).merges
    xy = 256
    assert merges[0] == (ord("x"), ord("y"))
    assert merges[1] == (ord("a"), xy)


@pytest.mark.parametrize("train", TRAINERS)
def test_overlapping_runs_count_every_pair_but_merge_left_to_right(train):
    # "aaaa" has three overlapping (a, a) pairs; the merge makes [aa, aa], then (aa, aa).
    result = train("aaaa", 258, pattern=WHOLE)
    assert result.counts == [3, 1]
    assert result.merges == [(97, 97), (256, 256)]
    # odd run: "aaaaa" -> [aa, aa, a]
    assert merge(list(b"aaaaa"), (97, 97), 256) == [256, 256, 97]


@pytest.mark.parametrize("train", TRAINERS)
def test_merges_never_cross_chunk_boundaries(train):
    # with the GPT-4 pattern, "a b" splits into "a", " b": the pair (a, ' ') never exists
    # chunks: "a", " b", " a", " b", " a", " b"; the pair (a, ' ') exists only across chunks
    merges = train("a b a b a b", 300, pattern="gpt4").merges
    assert merges == [(ord(" "), ord("b")), (ord(" "), ord("a"))]


@pytest.mark.parametrize("train", TRAINERS)
def test_stops_when_every_chunk_is_a_single_token(train):
    result = train("ab ab", 1000)  # chunks "ab", " ab": (a, b) then (' ', ab) make each one token
    assert result.stopped_early and result.reason == "no pairs left"
    assert result.merges == [(97, 98), (32, 256)]
    assert "stopped early (no pairs left): learned 2 of 744 merges" == str(result)


@pytest.mark.parametrize("train", TRAINERS)
def test_callback_sees_progress_and_can_stop_training(train, pydoc_text):
    seen = []

    def callback(p: TrainProgress):
        seen.append(p)
        return p.step < 5  # False at step 5: stop

    result = train(pydoc_text[:5000], 400, callback=callback)
    assert [p.step for p in seen] == [1, 2, 3, 4, 5]
    assert all(p.total == 144 for p in seen)
    assert [p.pair for p in seen] == result.merges and [p.new_id for p in seen] == [256, 257, 258, 259, 260]
    assert result.stopped_early and result.reason == "callback" and len(result.merges) == 5


def test_tokenizer_train_keeps_the_result_and_verbose_draws_a_bar(capsys):
    tok = Tokenizer.train("hello hello hello", 260, verbose=True)
    assert tok.train_result.merges == tok.merges and not tok.train_result.stopped_early
    assert "4/4 merges" in capsys.readouterr().err


TEXTS = {
    "repetitive": "aaaa bbbb aaaa aaab abab abab " * 20 + "a" * 33,
    "non-ascii": "naïve café — über straße 東京 東京都 🎉🎉🎉 ñandú " * 15,
    "tiny": None,  # filled from the corpus
    "multilingual": None,
}


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2", WHOLE])
@pytest.mark.parametrize("name", list(TEXTS))
@pytest.mark.parametrize("vocab_size", [260, 300, 512])
def test_fast_trainer_equals_reference(name, vocab_size, pattern, multilingual_text):
    from minitransformer.training.data import load_corpus

    text = TEXTS[name] or (multilingual_text if name == "multilingual" else load_corpus("tiny"))
    ref = train_reference(text, vocab_size, pattern=pattern)
    fast = train_fast(text, vocab_size, pattern=pattern)
    assert fast.merges == ref.merges
    assert fast.counts == ref.counts
    assert fast.reason == ref.reason


@pytest.mark.slow  # the reference trainer recounts 60 KB for each of 768 merges: tens of seconds
def test_fast_trainer_equals_reference_on_real_text(pydoc_text):
    text = pydoc_text[:60_000]
    assert train_fast(text, 1024).merges == train_reference(text, 1024).merges


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet="ab c\n", max_size=60), extra=st.integers(0, 40), pattern=st.sampled_from(["gpt4", WHOLE]))
def test_fast_trainer_equals_reference_on_random_text(text, extra, pattern):
    # a tiny alphabet makes ties and overlapping runs the common case, not the exception
    ref = train_reference(text, 256 + extra, pattern=pattern)
    assert train_fast(text, 256 + extra, pattern=pattern).merges == ref.merges


def test_reference_counts_pairs_in_first_seen_order():
    assert list(count_pairs([3, 1, 2, 3, 1])) == [(3, 1), (1, 2), (2, 3)]


@pytest.mark.parametrize("train", TRAINERS)
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": "abc", "vocab_size": 100}, "vocab_size must be an int >= 256"),
        ({"text": "abc", "vocab_size": 300.0}, "vocab_size must be an int"),
        ({"text": b"abc", "vocab_size": 300}, "text must be a str"),
        ({"text": "a\ud800b", "vocab_size": 300}, "lone surrogate"),
        ({"text": "abc", "vocab_size": 300, "pattern": "(a)|b"}, "capturing groups"),
        ({"text": "abc", "vocab_size": 300, "pattern": "[ab]"}, "skips 'c' at index 2"),
        ({"text": "abc", "vocab_size": 300, "pattern": "a*"}, "matches the empty string"),
        ({"text": "abc", "vocab_size": 300, "pattern": "[a"}, "not a valid regex"),
    ],
)
def test_bad_training_input_gets_a_clear_error(train, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        train(**kwargs)


def test_unknown_algorithm_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'fast', 'reference'"):
        Tokenizer.train("abc", 300, algorithm="bpe-dropout")
