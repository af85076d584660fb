"""Showing the tokenizer's work: it must tell the same story the encoder lives."""

import pytest

from minitransformer.tokenizer import Tokenizer
from minitransformer.tokenizer.show import compression, compression_curve, merge_tree, show_work, token_spans


def test_show_work_is_the_encoder_recorded(tok, multilingual_text):
    work = show_work(tok, multilingual_text)
    assert work.ids == tok.encode_ordinary(multilingual_text)
    assert "".join(work.chunks) == multilingual_text
    assert [c.encode("utf-8") for c in work.chunks] == work.chunk_bytes
    # replaying the recorded steps chunk by chunk gives each chunk's final ids
    for k, b in enumerate(work.chunk_bytes):
        ids = list(b)
        for step in (s for s in work.merges if s.chunk == k):
            assert list(step.before) == ids and step.new_id == tok.ranks[step.pair]
            ids = list(step.after)
        assert ids == work.chunk_ids[k]


def test_merges_inside_a_chunk_are_applied_lowest_rank_first(tok, held_out):
    work = show_work(tok, held_out[:3000])
    for k in range(len(work.chunks)):
        ranks = [s.new_id for s in work.merges if s.chunk == k]
        assert ranks == sorted(ranks)


def test_hooks_and_description(tok):
    work = show_work(tok, "The tokenizer")
    hooks = work.hooks()
    assert list(hooks) == ["tokenize.hook_chunks", "tokenize.hook_bytes", "tokenize.hook_merges", "tokenize.hook_ids"]
    text = work.describe(tok)
    assert text.startswith("13 characters -> 13 bytes -> 2 chunks ->")
    assert "[The] | [ tokenizer]" in text


def test_merge_tree_spells_the_token_from_its_bytes(tok):
    longest = max(range(256, 256 + len(tok.merges)), key=lambda i: len(tok.vocab[i]))
    tree = merge_tree(tok, longest)

    def leaves(node):
        return [node["id"]] if not node["children"] else [i for c in node["children"] for i in leaves(c)]

    assert bytes(leaves(tree)) == tok.vocab[longest]
    with pytest.raises(ValueError, match="unknown token id"):
        merge_tree(tok, 10**6)


def test_token_spans_html_and_ansi(tok):
    spans = token_spans(tok, "a <b> & c\n")
    html = spans._repr_html_()
    assert "&lt;" in html and "<b>" not in html  # escaped
    assert html.count("<span") == len(tok.encode_ordinary("a <b> & c\n"))
    assert spans.ansi().count("\x1b[0m") == len(spans.spans)
    assert str(spans).replace(" | ", "") == "a <b> & c\\n"


def test_compression_and_its_curve(tok, held_out):
    stats = compression(tok, held_out)
    assert stats["tokens"] == len(tok.encode_ordinary(held_out))
    assert stats["bytes_per_token"] == pytest.approx(stats["bytes"] / stats["tokens"])
    rows = compression_curve(tok, held_out[:8000], [256, 300, 512, 1024])
    assert rows[0]["bytes_per_token"] == 1.0  # bytes only
    tokens = [r["tokens"] for r in rows]
    assert tokens == sorted(tokens, reverse=True) and tokens[-1] < tokens[0] / 2
    # the cut tokenizer is exactly the one that training to that size would give
    assert rows[1]["tokens"] == compression(Tokenizer(tok.merges[:44], tok.pattern), held_out[:8000])["tokens"]
    with pytest.raises(ValueError, match="outside 256..1024"):
        compression_curve(tok, "x", [2048])
