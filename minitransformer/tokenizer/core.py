"""The byte-level BPE tokenizer: train it, encode text to ids, decode ids to text.

Stage 1 of the pipeline (concept: distinction). A `Tokenizer` is three pieces of
data, and nothing else:

- ``pattern``: the split regex (`patterns.py`); merges never cross its chunks;
- ``merges``: the learned pairs in rank order; ``merges[r]`` became id ``256 + r``;
- ``special_tokens``: strings such as ``"<|endoftext|>"`` that get ids after the
  merges and are only produced when the caller explicitly allows them.

Encoding splits the text, turns each chunk into UTF-8 bytes, and applies merges
inside the chunk lowest rank first, which reproduces training's choices (the
loop in `_encode_chunk`, ``impl="reference"``; the default ``impl="fast"`` makes
the same merges for all new chunks at once in numpy, see `encode_fast`). Decoding
concatenates the bytes of the ids. Every string survives the round trip:
``decode(encode(s)) == s``.

Deliberately left out: byte-to-unicode remapping (GPT-2's ``bytes_to_unicode``
trick only exists to store bytes in a JSON vocab; we store merges as ids),
dropout/regularised BPE, and normalisation (NFC etc.): text is taken as given.

    >>> tok = Tokenizer.train("aaabdaaabac", 259, pattern=r"[\\s\\S]+")
    >>> tok.encode("aaabdaaabac")
    [258, 100, 258, 97, 99]
    >>> tok.decode([258, 100])
    'aaabd'
"""

from __future__ import annotations

import codecs
from collections.abc import Collection, Iterable, Sequence
from typing import Literal, Optional, Union

import regex

from .bpe import (
    Pair,
    ProgressBar,
    ProgressCallback,
    TrainResult,
    count_pairs,
    invalid_unicode_message,
    merge,
)
from .checks import as_id_list, check_merges, check_specials
from .encode_fast import FastEncoder
from .patterns import compile_pattern, pattern_name, resolve_pattern, split_compiled
from .train_fast import train_fast
from .train_reference import train_reference

TRAINERS = {"fast": train_fast, "reference": train_reference}
CACHE_LIMIT = 200_000  # chunks remembered by the encoder before the memo is cleared
IMPLS = ("fast", "reference")  # how encode merges new chunks (see encode_ordinary)

SpecialSet = Union[Literal["all"], Collection[str]]


class Tokenizer:
    """A byte-level BPE tokenizer.

    Args:
        merges: pairs of ids in rank order; pair ``r`` becomes id ``256 + r``
            and may only use ids that exist before it.
        pattern: built-in name (``"gpt2"``, ``"gpt4"``) or a custom split regex.
        special_tokens: strings that get the ids right after the merges, in order.

    Attributes:
        vocab: ``vocab[id]`` is the bytes of token ``id`` (specials included).
        vocab_size: 256 + number of merges + number of special tokens.
        train_result: the `TrainResult` if this tokenizer came from `train`, else None.
    """

    def __init__(
        self,
        merges: Iterable[Sequence[int]] = (),
        pattern: str = "gpt4",
        special_tokens: Iterable[str] = (),
    ):
        self.pattern = resolve_pattern(pattern)
        self.merges: list[Pair] = check_merges(merges)
        self.special_tokens: dict[str, int] = check_specials(special_tokens, 256 + len(self.merges))
        self.train_result: Optional[TrainResult] = None
        # Derived tables (never saved; rebuilt from the three pieces above).
        self._regex = compile_pattern(self.pattern)
        self.ranks: dict[Pair, int] = {pair: 256 + r for r, pair in enumerate(self.merges)}
        self.vocab: list[bytes] = [bytes([b]) for b in range(256)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self.vocab.extend(s.encode("utf-8") for s in self.special_tokens)
        self.special_ids: dict[int, str] = {i: s for s, i in self.special_tokens.items()}
        self._cache: dict[str, list[int]] = {}  # chunk -> its ids, shared by both encoders
        self._fast: Optional[FastEncoder] = None  # built on the first fast encode

    # ------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        text: str,
        vocab_size: int,
        pattern: str = "gpt4",
        special_tokens: Iterable[str] = (),
        algorithm: str = "fast",
        callback: Optional[ProgressCallback] = None,
        verbose: bool = False,
    ) -> "Tokenizer":
        """Learn a tokenizer from ``text``.

        Args:
            text: training text.
            vocab_size: size of the vocabulary *before* special tokens (256 bytes + merges).
            pattern: split pattern name or regex.
            special_tokens: strings appended after the merges.
            algorithm: ``"fast"`` (incremental, the default) or ``"reference"``
                (recount everything each step; same merges, for reading).
            callback: called after each merge with a `TrainProgress`; return False to stop.
            verbose: draw a progress bar on stderr.

        Returns:
            The trained `Tokenizer`; ``tok.train_result`` says how many merges were
            learned and, if it stopped early, why.
        """
        if algorithm not in TRAINERS:
            raise ValueError(f"unknown algorithm {algorithm!r}; valid: {', '.join(map(repr, TRAINERS))}")
        if verbose:
            bar, user_cb = ProgressBar(), callback

            def callback(p):  # noqa: F811 - draw the bar, then let the user's callback decide
                bar(p)
                return user_cb(p) if user_cb is not None else None

        result = TRAINERS[algorithm](text, vocab_size, pattern, callback)
        tok = cls(result.merges, pattern, special_tokens)
        tok.train_result = result
        return tok

    # ------------------------------------------------------------------ sizes and tables
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def pattern_name(self) -> Optional[str]:
        """``"gpt2"`` or ``"gpt4"`` for a built-in pattern, None for a custom one."""
        return pattern_name(self.pattern)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes of one token. Raises ValueError for an id outside the vocabulary."""
        self._check_id(token_id)
        return self.vocab[token_id]

    # ------------------------------------------------------------------ encoding
    def encode_ordinary(self, text: str, impl: str = "fast") -> list[int]:
        """Encode ``text`` ignoring special tokens (they are encoded as the plain text they are).

        ``impl`` chooses how the chunks not met before are merged: ``"reference"``
        one chunk at a time in Python (`_encode_chunk`, the one to read), ``"fast"``
        (the default) all of them at once in numpy (`encode_fast`). Same ids.
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}; decode bytes first")
        if impl not in IMPLS:
            raise ValueError(f"impl={impl!r} is not valid; choose one of {', '.join(map(repr, IMPLS))}")
        if impl == "fast" and self._fast is None:
            self._fast = FastEncoder(self.ranks, self.pattern, one_chunk=self._encode_chunk)
        cache = self._cache
        chunks = self._fast.split(text) if impl == "fast" else split_compiled(text, self._regex)
        new = list(set(chunks).difference(cache))  # encode each new distinct chunk once
        try:
            if impl == "fast":  # all new chunks at once
                cache.update(zip(new, self._fast.encode_chunks(new)))
            else:  # one chunk at a time
                for chunk in new:
                    cache[chunk] = self._encode_chunk(chunk.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(invalid_unicode_message(text)) from None
        ids: list[int] = []
        for chunk in chunks:  # each chunk's ids, in order (+= is the quickest way to join them)
            ids += cache[chunk]
        if len(cache) > CACHE_LIMIT:  # keep memory bounded on huge, varied inputs
            cache.clear()
        return ids

    def encode(
        self,
        text: str,
        allowed_special: SpecialSet = (),
        disallowed_special: SpecialSet = "all",
        impl: str = "fast",
    ) -> list[int]:
        """Encode ``text``, with tiktoken's rules for special tokens.

        Args:
            allowed_special: special tokens that may appear in ``text`` and are
                encoded as their single id; ``"all"`` allows every one.
            disallowed_special: special tokens whose appearance raises an error;
                ``"all"`` (the default) means every special token not allowed.
                Pass ``()`` to encode such text as ordinary text instead.
            impl: ``"fast"`` or ``"reference"``, as in `encode_ordinary`.

        Raises:
            ValueError: if ``text`` contains a disallowed special token.
        """
        allowed = self._special_set(allowed_special, "allowed_special")
        disallowed = self._special_set(disallowed_special, "disallowed_special")
        if disallowed_special == "all":
            disallowed = disallowed - allowed
        if disallowed:
            for s in disallowed:
                where = text.find(s) if isinstance(text, str) else -1
                if where >= 0:
                    raise ValueError(
                        f"text contains the special token {s!r} at index {where}, which is not allowed. "
                        f"If it is meant as the special token, pass allowed_special={{{s!r}}} (or 'all'); "
                        "to encode it as plain text, pass disallowed_special=()."
                    )
        if not allowed:
            return self.encode_ordinary(text, impl)
        # Split around the allowed special tokens; encode the pieces between them.
        pattern = regex.compile("|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True)))
        ids: list[int] = []
        start = 0
        for m in pattern.finditer(text):
            ids.extend(self.encode_ordinary(text[start:m.start()], impl))
            ids.append(self.special_tokens[m.group()])
            start = m.end()
        ids.extend(self.encode_ordinary(text[start:], impl))
        return ids

    def encode_batch(self, texts: Iterable[str], **kwargs) -> list[list[int]]:
        """`encode` every text of a list; same keyword arguments."""
        if isinstance(texts, str):
            raise ValueError("encode_batch takes a list of strings; for one string use encode(text)")
        return [self.encode(t, **kwargs) for t in texts]

    def _encode_chunk(self, data: bytes, steps: Optional[list] = None) -> list[int]:
        """Apply merges inside one chunk, lowest rank first, until none applies.

        If ``steps`` is a list, every merge applied is appended to it as
        ``(pair, new_id, ids_before, ids_after)`` (used by `show_work`).
        """
        ids = list(data)
        ranks = self.ranks
        while len(ids) >= 2:
            pairs = count_pairs(ids)
            pair = min(pairs, key=lambda p: ranks.get(p, float("inf")))  # the earliest-learned merge
            if pair not in ranks:
                break  # no pair here was ever merged in training
            merged = merge(ids, pair, ranks[pair])
            if steps is not None:
                steps.append((pair, ranks[pair], ids, merged))
            ids = merged
        return ids

    def _special_set(self, value: SpecialSet, arg: str) -> set[str]:
        if value == "all":
            return set(self.special_tokens)
        if isinstance(value, str):
            raise ValueError(f"{arg} must be 'all' or a collection of special tokens, got the string {value!r}")
        unknown = set(value) - set(self.special_tokens)
        if unknown:
            raise ValueError(
                f"{arg} names {sorted(unknown)}, which are not special tokens of this tokenizer; "
                f"its special tokens are {sorted(self.special_tokens) or 'none'}"
            )
        return set(value)

    # ------------------------------------------------------------------ decoding
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of a sequence of ids (may end inside a UTF-8 character)."""
        return self._bytes_of(as_id_list(ids, "decode_bytes"))

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Decode ids (a list, tuple or 1-D numpy array) to text. ``errors`` is Python's codec
        argument: ``"replace"`` turns a broken UTF-8 sequence into U+FFFD, ``"strict"`` raises."""
        return self._bytes_of(as_id_list(ids, "decode")).decode("utf-8", errors=errors)

    def _bytes_of(self, ids: list) -> bytes:
        self._check_ids(ids)
        return b"".join([self.vocab[i] for i in ids])

    def stream_decoder(self, errors: str = "replace") -> "StreamDecoder":
        """A decoder for ids that arrive one at a time (e.g. during generation)."""
        return StreamDecoder(self, errors)

    def _check_ids(self, ids: list) -> None:
        """Validate many ids at once; fall back to `_check_id` only to name the bad one."""
        try:
            ok = all(type(i) is int for i in ids) and (not ids or (min(ids) >= 0 and max(ids) < len(self.vocab)))
        except TypeError:
            ok = False
        if not ok:
            for pos, i in enumerate(ids):
                self._check_id(i, pos)

    def _check_id(self, token_id, pos: Optional[int] = None) -> None:
        at = f" at position {pos}" if pos is not None else ""
        if isinstance(token_id, bool) or not isinstance(token_id, int):
            raise ValueError(f"token id{at} must be an int, got {token_id!r} ({type(token_id).__name__})")
        if not 0 <= token_id < len(self.vocab):
            raise ValueError(
                f"unknown token id {token_id}{at}: this tokenizer's ids are 0..{len(self.vocab) - 1}"
            )

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write the tokenizer as one versioned, human-readable JSON file (atomically)."""
        from .files import save_tokenizer

        save_tokenizer(self, path)

    @classmethod
    def load(cls, path) -> "Tokenizer":
        """Read a tokenizer written by `save`, validating every field."""
        from .files import load_tokenizer

        return load_tokenizer(path, cls)

    def save_vocab(self, path) -> None:
        """Write a readable listing: one line per token with the two tokens it was merged from."""
        from .files import save_vocab

        save_vocab(self, path)

    def export_tiktoken(self, path) -> None:
        """Write the ranks in the ``.tiktoken`` format, so tiktoken can load this vocabulary."""
        from .files import export_tiktoken

        export_tiktoken(self, path)

    def chunks(self, text: str) -> list[str]:
        """The pieces the split pattern cuts ``text`` into; merges never cross them."""
        return split_compiled(text, self._regex) if text else []

    def encode_chunk(self, data: bytes, steps: Optional[list] = None) -> list[int]:
        """The ids of one chunk's bytes (the readable, per-chunk encoder; see `_encode_chunk`)."""
        return self._encode_chunk(data, steps)

    def show_work(self, text: str):
        """What encoding ``text`` does, step by step: chunks, bytes, merges (see `show.show_work`)."""
        from .show import show_work

        return show_work(self, text)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Tokenizer)
            and self.pattern == other.pattern
            and self.merges == other.merges
            and self.special_tokens == other.special_tokens
        )

    def __repr__(self) -> str:
        pat = self.pattern_name or "custom"
        return (
            f"Tokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"pattern={pat!r}, special_tokens={list(self.special_tokens)})"
        )


class StreamDecoder:
    """Turns ids into text as they arrive, holding back an incomplete UTF-8 sequence.

    One token may end in the middle of a character (a byte-level vocabulary can
    split an emoji into several tokens); printing each token's bytes on its own
    would show U+FFFD garbage. ``feed`` returns only the text that is complete.

    >>> tok = Tokenizer()                      # bytes only: "é" is two tokens
    >>> d = tok.stream_decoder()
    >>> [d.feed(i) for i in "é!".encode()]
    ['', 'é', '!']
    >>> d.flush()
    ''
    """

    def __init__(self, tokenizer: Tokenizer, errors: str = "replace"):
        self.tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)

    def feed(self, token_id: int) -> str:
        return self._decoder.decode(self.tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        """Return what is held back (as U+FFFD under ``errors="replace"``) and reset."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
