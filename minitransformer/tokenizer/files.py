"""Tokenizer files: one versioned JSON file, a readable vocabulary listing, and tiktoken ranks.

The JSON file holds exactly the three pieces a tokenizer is made of (pattern,
merges, special tokens) and nothing derived, one merge per line so that a diff
of two tokenizers is readable::

    {
      "format": "minitransformer-tokenizer",
      "version": 1,
      "pattern_name": "gpt4",
      "pattern": "'(?i:[sdmt]|ll|ve|re)|...",
      "special_tokens": {"<|endoftext|>": 4096},
      "merges": [
        [32, 116],
        ...
      ]
    }

Loading checks every field and names the one that is wrong. Nothing here runs
code from the file (no pickle).

The ``.tiktoken`` export writes one line per token, ``base64(bytes) rank``, the
format `tiktoken.load.load_tiktoken_bpe` reads, so production tools can use our
vocabulary (special tokens are kept out of it, as tiktoken expects).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from ..core.fileio import PathLike, atomic_write

FORMAT = "minitransformer-tokenizer"
VERSION = 1


def save_tokenizer(tok, path: PathLike) -> Path:
    """Write ``tok`` to ``path`` as JSON (atomically). Returns the path."""
    head = {
        "format": FORMAT,
        "version": VERSION,
        "pattern_name": tok.pattern_name,
        "pattern": tok.pattern,
        "special_tokens": tok.special_tokens,
    }
    body = json.dumps(head, indent=2, ensure_ascii=False)[:-2]  # drop the closing "\n}"
    merges = ",\n".join(f"    [{a}, {b}]" for a, b in tok.merges)
    text = body + ',\n  "merges": [\n' + merges + ("\n" if merges else "") + "  ]\n}\n"
    return atomic_write(path, text)


def load_tokenizer(path: PathLike, cls):
    """Read a tokenizer JSON file written by `save_tokenizer`, validating it; ``cls`` is `Tokenizer`.

    (The class is passed in, so this module never imports the tokenizer's core, which imports it.)

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    path = Path(path)

    def bad(what: str) -> ValueError:
        return ValueError(f"{path} is not a valid tokenizer file: {what}")

    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no tokenizer file at {path}; save one with Tokenizer.save(path)") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a tokenizer file; give the tokenizer.json inside it") from None
    except UnicodeDecodeError:
        raise bad("it is not UTF-8 text") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise bad(f"malformed JSON ({exc})") from None
    except RecursionError:  # JSON nested thousands deep: no tokenizer file looks like that
        raise bad("its JSON is nested too deeply to be a tokenizer file") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f'"format" must be {FORMAT!r}')
    if data.get("version") != VERSION:
        raise bad(
            f"format version {data.get('version')!r} is not supported; this minitransformer reads version "
            f"{VERSION} (re-save the tokenizer with a matching version)"
        )
    for key, kind in (("pattern", str), ("merges", list), ("special_tokens", dict)):
        if not isinstance(data.get(key), kind):
            raise bad(f'"{key}" must be a {kind.__name__}')
    specials = data["special_tokens"]
    first_special = 256 + len(data["merges"])
    expected = list(range(first_special, first_special + len(specials)))
    if list(specials.values()) != expected:
        raise bad(f'"special_tokens" must have the ids {expected} in order, got {list(specials.values())}')
    try:
        tok = cls(data["merges"], data["pattern"], list(specials))
    except ValueError as exc:
        raise bad(str(exc)) from None
    name = data.get("pattern_name")
    if name is not None and name != tok.pattern_name:
        raise bad(f'"pattern_name" is {name!r} but "pattern" is not the built-in {name!r} pattern')
    return tok


def render_token(b: bytes) -> str:
    """A token's bytes as printable text: valid UTF-8 is shown, control and broken bytes are escaped.

    >>> render_token(b" the"), render_token(b"\\n"), render_token(b"\\xe2\\x82")
    (' the', '\\\\n', '\\\\xe2\\\\x82')
    """
    text = b.decode("utf-8", errors="backslashreplace")
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii") for ch in text)


def vocab_listing(tok) -> str:
    """One line per token: id, the token, and for merged tokens the two tokens it was made of."""
    lines = [f"# {tok!r}", "# id\ttoken\t<- left + right"]
    for i, b in enumerate(tok.vocab):
        line = f"{i}\t[{render_token(b)}]"
        if 256 <= i < 256 + len(tok.merges):
            a, c = tok.merges[i - 256]
            line += f"\t<- [{render_token(tok.vocab[a])}] + [{render_token(tok.vocab[c])}]"
        elif i in tok.special_ids:
            line += "\tspecial"
        lines.append(line)
    return "\n".join(lines) + "\n"


def save_vocab(tok, path: PathLike) -> Path:
    """Write the readable vocabulary listing (not loadable: the JSON file is the source of truth)."""
    return atomic_write(path, vocab_listing(tok))


def export_tiktoken(tok, path: PathLike) -> Path:
    """Write the mergeable ranks in the ``.tiktoken`` format (``base64(token) rank`` per line).

    Load it with ``tiktoken.Encoding(name, pat_str=tok.pattern,
    mergeable_ranks=tiktoken.load.load_tiktoken_bpe(path), special_tokens=tok.special_tokens)``.

    Raises:
        ValueError: if two ids have the same bytes (tiktoken ranks need unique tokens).
    """
    ranks = tok.vocab[: 256 + len(tok.merges)]
    seen: dict[bytes, int] = {}
    for i, b in enumerate(ranks):
        if b in seen:
            raise ValueError(
                f"tokens {seen[b]} and {i} have the same bytes {b!r}; the .tiktoken format needs unique tokens"
            )
        seen[b] = i
    lines = "".join(f"{base64.b64encode(b).decode('ascii')} {i}\n" for i, b in enumerate(ranks))
    return atomic_write(path, lines)
