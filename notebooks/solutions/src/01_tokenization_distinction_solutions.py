# Source of notebooks/solutions/01_tokenization_distinction_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 01_tokenization`.

# %% [markdown]
# # Solutions · Stage 1 · BPE tokenization · *distinction*
#
# Worked solutions to the exercises of `01_tokenization_distinction.ipynb`. Try
# them there first: a solution read before the attempt teaches much less than
# one read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import numpy as np

from minitransformer.training.data import load_corpus, split_text
from minitransformer.tokenizer import GPT4_SPLIT_PATTERN, Tokenizer, merge, split

# The notebook's setup, the part the checks use.
multilingual = load_corpus("multilingual")
train_text, held_out = split_text(load_corpus("pydoc"))
tok = Tokenizer.train(train_text, 4096, pattern="gpt4")
sentence = "The tokenizer doesn't know 1234567 words; it knows 4096 tokens."


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: `my_merge`
#
# Walk the list with an index. Where the pair starts at `i`, emit `new_id` and
# jump two places; otherwise copy one id and move one place. Jumping two places
# is what makes occurrences non-overlapping with the leftmost one winning:
# in `[1, 1, 1]` the pair `(1, 1)` at position 0 consumes the middle `1`, so the
# pair at position 1 is never seen.

# %%
def my_merge(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2  # both halves of the pair are consumed
        else:
            out.append(ids[i])
            i += 1
    return out


def test_my_merge():
    assert my_merge([1, 1, 1], (1, 1), 9) == [9, 1], "occurrences never overlap: the leftmost one wins"
    rng = np.random.default_rng(0)
    for _ in range(500):
        ids = rng.integers(0, 3, size=rng.integers(0, 12)).tolist()
        pair = tuple(rng.integers(0, 3, size=2).tolist())
        assert my_merge(ids, pair, 99) == merge(ids, pair, 99), f"ids={ids}, pair={pair}"


check("core 1 (my_merge)", test_my_merge)

# %% [markdown]
# ## Core 2: predictions
#
# (a) With no merges every token is one byte, so count UTF-8 bytes: the ASCII
# letters, spaces and punctuation are 1 byte each, `ï` and `é` are 2 bytes each
# (U+00EF and U+00E9 lie in 0x80..0x7FF), and the emoji `🎉` (U+1F389, above
# 0xFFFF) is 4 bytes:
#
# `n a ï v e ␣ c a f é ␣ 🎉` = 1 + 1 + 2 + 1 + 1 + 1 + 1 + 1 + 1 + 2 + 1 + 4 = **17**.
#
# (b) The gpt4 pattern gives **9** chunks: `I` | `'m` (a contraction is its own
# chunk) | `␣` (a space before a digit is not glued to it: only letters take a
# leading space) | `123` | `456` | `7` (digits in groups of at most three, from
# the left) | `␣years` | `␣old` | `!!` (a run of punctuation is one chunk).

# %%
guess_bytes_only = 17  # (a)
guess_chunks = 9  # (b)
print(split("I'm 1234567 years old!!", "gpt4"))


def test_predictions():
    if guess_bytes_only is None or guess_chunks is None:
        raise NotImplementedError
    assert guess_bytes_only == len(Tokenizer().encode("naïve café 🎉")), "count UTF-8 bytes, not characters"
    assert guess_chunks == len(split("I'm 1234567 years old!!", "gpt4")), "mind the contraction and the digits"


check("core 2 (predictions)", test_predictions)

# %% [markdown]
# ## Optional 3: `my_encode`
#
# Inside a chunk, look at every adjacent pair, pick the one with the lowest rank,
# merge it everywhere with `my_merge`, and repeat until no pair of the chunk has
# a rank. Chunks are encoded independently and their ids concatenated.
#
# **Why lowest rank first?** Encoding must replay training. A merge `(a, b)`
# learned at rank *r* can only have been learned because its parts `a` and `b`
# already existed, and when it was learned every lower-ranked merge had already
# been applied to the training text. Applying merges in rank order reproduces
# the segmentation training saw, so the ids are the ones the model was trained
# on. Picking the most frequent pair *of the text being encoded* would make the
# segmentation of a word depend on what else is in the text: the same word
# could get different ids in two documents.

# %%
def my_encode(tok, text):
    ids = []
    for chunk in split(text, tok.pattern):
        chunk_ids = list(chunk.encode("utf-8"))
        while len(chunk_ids) >= 2:
            pairs = set(zip(chunk_ids, chunk_ids[1:]))
            pair = min(pairs, key=lambda p: tok.ranks.get(p, float("inf")))  # the earliest-learned merge
            if pair not in tok.ranks:
                break  # no learned merge applies any more
            chunk_ids = my_merge(chunk_ids, pair, tok.ranks[pair])
        ids.extend(chunk_ids)
    return ids


def test_my_encode():
    assert my_encode(tok, "") == []
    assert my_encode(tok, sentence) == tok.encode_ordinary(sentence)
    assert my_encode(tok, multilingual) == tok.encode_ordinary(multilingual)


check("optional 3 (my_encode)", test_my_encode)

# %% [markdown]
# ## Stretch 4: one digit per chunk
#
# Numbers enter the gpt4 pattern through one alternative, `\p{N}{1,3}+`: up to
# three digits, possessively. Replace it by `\p{N}`, one digit. No other
# alternative can take a digit: the letter alternative allows one leading
# *non-letter, non-digit* character (`[^\r\n\p{L}\p{N}]`), and the punctuation
# alternative excludes `\p{N}` too. Since merges never cross chunks, no token
# can ever hold two digits.

# %%
assert r"\p{N}{1,3}+" in GPT4_SPLIT_PATTERN
MY_PATTERN = GPT4_SPLIT_PATTERN.replace(r"\p{N}{1,3}+", r"\p{N}")
print(split("x = 12345; y = 2024.06 + 3", MY_PATTERN))


def test_digit_pattern():
    if MY_PATTERN is None:
        raise NotImplementedError
    for chunk in split("x = 12345; y = 2024.06 + 3", MY_PATTERN):
        assert sum(ch.isdigit() for ch in chunk) <= 1, f"chunk {chunk!r} holds more than one digit"
    digits_tok = Tokenizer.train(train_text[:100_000], 512, pattern=MY_PATTERN)
    for i in range(256, digits_tok.vocab_size):
        token = digits_tok.vocab[i].decode("utf-8", errors="ignore")
        assert sum(ch.isdigit() for ch in token) <= 1, f"token {i} {token!r} holds more than one digit"
    assert len(digits_tok.encode("2024")) == 4
    assert digits_tok.decode(digits_tok.encode(multilingual)) == multilingual


check("stretch 4 (digit pattern)", test_digit_pattern)
