"""Export a tokenizer to the Hugging Face ``tokenizers`` JSON format (``tokenizer.json``).

The same three pieces (split pattern, merges, special tokens) are written in the
layout that ``tokenizers.Tokenizer.from_file`` and ``transformers``'
``PreTrainedTokenizerFast(tokenizer_file=...)`` read, so a model exported with
`minitransformer.interop.gpt2.export_gpt2` can travel with its tokenizer:

- pre-tokenizer: ``Split`` with our split regex (each match is a chunk), then
  ``ByteLevel`` (each chunk's UTF-8 bytes become printable characters, below);
- model: ``BPE`` with the vocabulary (token -> id) and the merges in rank order;
- special tokens: "added tokens", matched in the text before anything else;
- decoder: ``ByteLevel`` (the characters back to bytes, then UTF-8).

Given the same text, the ids are the same as ours (tested on held-out and
multilingual text when ``tokenizers`` is installed).

**Why bytes become characters.** A JSON vocabulary is keyed by strings, but a
byte-level token can be any bytes, including half of a UTF-8 character or a
control byte. GPT-2 (Radford et al., 2019) maps each of the 256 bytes to one
printable Unicode character (`bytes_to_unicode`): printable Latin-1 bytes stand
for themselves, the others are shifted to U+0100 and up, so the space 0x20
becomes ``"Ġ"`` (U+0120) and the newline ``"Ċ"``. A token is written as the
string of its bytes' characters:

    >>> bytes_to_unicode()[ord(" ")], bytes_to_unicode()[ord("\\n")], token_string(" the".encode())
    ('Ġ', 'Ċ', 'Ġthe')
    >>> from minitransformer.tokenizer import Tokenizer
    >>> data = to_hf_dict(Tokenizer.train("aaabdaaabac", 258, pattern="gpt2"))
    >>> data["model"]["merges"], data["model"]["vocab"]["aa"]
    (['a a', 'aa a'], 256)

note: ``tokenizers`` runs the split regex with the Oniguruma engine, not the
``regex`` package. The built-in patterns behave the same in both; a custom
pattern that relies on a feature only one of them has may split differently.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ..core.fileio import PathLike, atomic_write
from ..tokenizer import Tokenizer


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte 0..255 to one printable character (a bijection).

    Bytes that are printable characters in Latin-1 (``!``..``~``, ``¡``..``¬``,
    ``®``..``ÿ``) map to themselves; the 68 others (controls, space, DEL, NBSP,
    soft hyphen) map, in byte order, to U+0100, U+0101, ... so none is whitespace.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, shifted = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + shifted)
            shifted += 1
    return mapping


def token_string(token: bytes) -> str:
    """The vocabulary string of a token's bytes: each byte as its `bytes_to_unicode` character."""
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def to_hf_dict(tok: Tokenizer) -> dict:
    """The ``tokenizer.json`` content for ``tok``, as a dict.

    Raises:
        ValueError: if two ids have the same bytes (a vocabulary keyed by token
            strings cannot hold both; the ``.tiktoken`` export has the same rule).
    """
    n_ranks = 256 + len(tok.merges)
    vocab: dict[str, int] = {}
    for i in range(n_ranks):
        s = token_string(tok.vocab[i])
        if s in vocab:
            raise ValueError(f"tokens {vocab[s]} and {i} have the same bytes {tok.vocab[i]!r}; a tokenizers "
                             "vocabulary needs unique tokens")
        vocab[s] = i
    # note: "left right" strings, not [left, right] pairs: every tokenizers version reads them,
    # and a byte-level token never contains a space (the space byte is written "Ġ").
    merges = [f"{token_string(tok.vocab[a])} {token_string(tok.vocab[b])}" for a, b in tok.merges]
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s, i in tok.special_tokens.items()]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                # our chunks: every match of the split pattern is one piece ("Isolated")
                {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False},
                # then bytes -> characters, with no regex of its own and no added space
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,  # no BOS/EOS added: the ids are exactly the text's
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,  # byte-level: nothing is ever unknown
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def tokenizer_json(tok: Tokenizer) -> str:
    """The text of ``tok``'s ``tokenizer.json`` (what `export_hf_tokenizer` writes)."""
    if not isinstance(tok, Tokenizer):
        raise ValueError(f"a tokenizer.json export takes a Tokenizer, got {type(tok).__name__}")
    return json.dumps(to_hf_dict(tok), ensure_ascii=False, indent=1) + "\n"


def export_hf_tokenizer(tok: Tokenizer, path: PathLike) -> Path:
    """Write ``tok`` as a Hugging Face ``tokenizer.json`` (atomically). Returns the path.

    Load it with ``tokenizers.Tokenizer.from_file(path)``, or in ``transformers`` with
    ``PreTrainedTokenizerFast(tokenizer_file=path)``. Special tokens are matched
    wherever they appear in the text (as ``allowed_special="all"`` does here).
    To write it inside a checkpoint folder, pass ``tokenizer=`` to the export
    (`gpt2.export_gpt2`, ...): the folder then appears with it, as one unit.
    """
    return atomic_write(path, tokenizer_json(tok))
