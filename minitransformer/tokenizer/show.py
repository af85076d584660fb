"""Showing the tokenizer's work: chunks, bytes, each merge applied, boundaries, compression.

Everything here returns plain data (a notebook draws it, a test checks it) and
is computed by the tokenizer's own code paths: `show_work` runs the same
chunk encoder as `Tokenizer.encode_ordinary`, asking it to record its steps.

    >>> from minitransformer.tokenizer import Tokenizer
    >>> tok = Tokenizer.train("aaabdaaabac", 259, pattern=r"[\\s\\S]+")
    >>> work = show_work(tok, "aaab")
    >>> [(s.pair, s.new_id) for s in work.merges]
    [((97, 97), 256), ((256, 97), 257), ((257, 98), 258)]
    >>> work.ids
    [258]
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .bpe import encode_chunks_utf8
from .files import render_token


@dataclass(frozen=True)
class MergeStep:
    """One merge applied while encoding: in chunk ``chunk``, ``pair`` became ``new_id``."""

    chunk: int
    pair: tuple[int, int]
    new_id: int
    before: tuple[int, ...]
    after: tuple[int, ...]


@dataclass(frozen=True)
class EncodingWork:
    """The whole story of encoding one text (without special tokens).

    Attributes:
        text: the input.
        chunks: the pieces the split pattern cut it into.
        chunk_bytes: each chunk's UTF-8 bytes (the 256-symbol alphabet BPE starts from).
        merges: every merge applied, in order, chunk by chunk.
        chunk_ids: the final ids of each chunk.
        ids: all ids, equal to ``tokenizer.encode_ordinary(text)``.
    """

    text: str
    chunks: list[str]
    chunk_bytes: list[bytes]
    merges: list[MergeStep]
    chunk_ids: list[list[int]]
    ids: list[int]

    def hooks(self) -> dict:
        """The same data under the stable names the pipeline trace uses."""
        return {
            "tokenize.hook_chunks": self.chunks,
            "tokenize.hook_bytes": self.chunk_bytes,
            "tokenize.hook_merges": self.merges,
            "tokenize.hook_ids": self.ids,
        }

    def describe(self, tok, max_steps: int = 20) -> str:
        """A text account: chunks, then the first ``max_steps`` merges with the tokens they join."""
        n_bytes = sum(map(len, self.chunk_bytes))
        lines = [
            f"{len(self.text)} characters -> {n_bytes} bytes -> {len(self.chunks)} chunks "
            f"-> {len(self.ids)} tokens ({n_bytes / max(len(self.ids), 1):.2f} bytes/token)",
            "chunks: " + " | ".join(f"[{render_token(b)}]" for b in self.chunk_bytes),
        ]
        for s in self.merges[:max_steps]:
            a, b = s.pair
            lines.append(
                f"  chunk {s.chunk}: merge [{render_token(tok.vocab[a])}] + [{render_token(tok.vocab[b])}]"
                f" -> {s.new_id} [{render_token(tok.vocab[s.new_id])}]  ({len(s.before)} -> {len(s.after)} tokens)"
            )
        if len(self.merges) > max_steps:
            lines.append(f"  ... {len(self.merges) - max_steps} more merges")
        return "\n".join(lines)


def show_work(tok, text: str) -> EncodingWork:
    """Encode ``text`` like `Tokenizer.encode_ordinary`, recording every step."""
    chunks = tok.chunks(text) if text else []
    chunk_bytes = encode_chunks_utf8(chunks)  # clear error for invalid Unicode
    merges: list[MergeStep] = []
    chunk_ids = []
    for k, b in enumerate(chunk_bytes):
        steps: list = []
        chunk_ids.append(tok.encode_chunk(b, steps))
        merges.extend(MergeStep(k, pair, new, tuple(before), tuple(after)) for pair, new, before, after in steps)
    ids = [i for c in chunk_ids for i in c]
    return EncodingWork(text, chunks, chunk_bytes, merges, chunk_ids, ids)


def merge_tree(tok, token_id: int) -> dict:
    """How a token was built: ``{"id", "token", "children": [left, right]}`` down to single bytes.

    >>> from minitransformer.tokenizer import Tokenizer
    >>> tok = Tokenizer([(97, 97), (256, 98)])
    >>> t = merge_tree(tok, 257)
    >>> t["token"], [c["token"] for c in t["children"]]
    ('aab', ['aa', 'b'])
    """
    tok.token_bytes(token_id)  # validates the id
    node = {"id": token_id, "token": render_token(tok.vocab[token_id]), "children": []}
    if 256 <= token_id < 256 + len(tok.merges):
        node["children"] = [merge_tree(tok, i) for i in tok.merges[token_id - 256]]
    return node


# ---------------------------------------------------------------------- token boundaries
_PALETTE = ["#fde2e4", "#dbeafe", "#dcfce7", "#fef9c3", "#ede9fe", "#ffedd5"]  # light backgrounds
_ANSI = [224, 153, 157, 229, 189, 223]  # the same hues in the 256-colour terminal palette


class TokenSpans:
    """Text with its token boundaries coloured: HTML in Jupyter, ANSI colours in a terminal.

    ``spans`` is a list of ``(id, piece)`` where piece is the token's bytes shown
    as text (a token that ends inside a UTF-8 character shows its escaped bytes).
    """

    def __init__(self, tok, ids):
        self.spans = [(i, render_token(tok.token_bytes(i))) for i in ids]

    def ansi(self) -> str:
        out = []
        for k, (_, piece) in enumerate(self.spans):
            out.append(f"\x1b[48;5;{_ANSI[k % len(_ANSI)]}m\x1b[30m{piece}\x1b[0m")
        return "".join(out)

    def _repr_html_(self) -> str:
        parts = [
            f'<span title="id {i}" style="background:{_PALETTE[k % len(_PALETTE)]};color:#000;'
            f'white-space:pre;border-radius:2px">{html.escape(piece)}</span>'
            for k, (i, piece) in enumerate(self.spans)
        ]
        return '<div style="font-family:monospace;line-height:1.8">' + "".join(parts) + "</div>"

    def __str__(self) -> str:
        return " | ".join(piece for _, piece in self.spans)

    def __repr__(self) -> str:
        return f"TokenSpans({len(self.spans)} tokens: {str(self)[:60]!r})"


def token_spans(tok, text: str) -> TokenSpans:
    """Encode ``text`` (ordinary) and return its coloured token boundaries."""
    return TokenSpans(tok, tok.encode_ordinary(text))


# ---------------------------------------------------------------------- compression
def compression(tok, text: str) -> dict:
    """How much the tokenizer compresses ``text``: bytes, characters and tokens, and their ratios."""
    ids = tok.encode_ordinary(text)
    n_bytes, n_tok = len(text.encode("utf-8")), len(ids)
    return {
        "bytes": n_bytes,
        "chars": len(text),
        "tokens": n_tok,
        "bytes_per_token": n_bytes / n_tok if n_tok else 0.0,
        "chars_per_token": len(text) / n_tok if n_tok else 0.0,
    }


def compression_curve(tok, text: str, vocab_sizes) -> list[dict]:
    """Bytes per token on ``text`` for the same tokenizer cut to each vocabulary size.

    note: training is sequential, so the first ``k`` merges of a tokenizer are
    exactly what training to ``256 + k`` would have learned: one training run
    gives the whole curve.
    """
    rows = []
    for v in vocab_sizes:
        if not 256 <= v <= 256 + len(tok.merges):
            raise ValueError(f"vocab size {v} is outside 256..{256 + len(tok.merges)} for this tokenizer")
        cut = type(tok)(tok.merges[: v - 256], tok.pattern)
        rows.append({"vocab_size": v, **compression(cut, text)})
    return rows
