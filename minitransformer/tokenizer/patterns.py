"""Split patterns: the regexes that cut text into chunks before any merge happens.

Byte-pair merges never cross a chunk boundary, so the split pattern decides the
coarsest distinctions: letters stay apart from digits, punctuation from words,
and a leading space sticks to the word after it (" the" is one unit, "the " never).

Two patterns used by production tokenizers are built in by name:

- ``"gpt2"``: the pattern of GPT-2's tokenizer (Radford et al., 2019), as
  published in its ``encoder.py``.
- ``"gpt4"``: the pattern of ``cl100k_base`` (GPT-3.5/GPT-4), as published in
  tiktoken. Letters run case-insensitively into contractions, numbers split into
  groups of at most three digits, and newlines are kept apart from other spaces.

Any other string is used as a custom pattern (compiled with the ``regex``
package, which understands ``\\p{L}`` classes and possessive quantifiers).

    >>> split("Hello world!!", "gpt4")
    ['Hello', ' world', '!!']
    >>> split("x = 12345", "gpt4")
    ['x', ' =', ' ', '123', '45']
"""

from __future__ import annotations

import functools

import regex

GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

PATTERNS: dict[str, str] = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}


def resolve_pattern(pattern: str) -> str:
    """Return the regex source for a built-in name (``"gpt2"``, ``"gpt4"``) or a custom pattern.

    Raises:
        ValueError: if ``pattern`` is not a string, is empty, does not compile,
            or can match the empty string (which would make chunking loop forever).
    """
    if not isinstance(pattern, str):
        raise ValueError(
            f"pattern must be a name ({', '.join(map(repr, PATTERNS))}) or a regex string, "
            f"got {type(pattern).__name__}"
        )
    source = PATTERNS.get(pattern, pattern)
    if not source:
        raise ValueError(f"pattern must not be empty; use one of {', '.join(map(repr, PATTERNS))}")
    compiled = compile_pattern(source)
    if compiled.groups:
        raise ValueError(
            f"split pattern {source!r} has capturing groups, which would make findall return the groups "
            "instead of the chunks; write groups as (?:...)"
        )
    if compiled.fullmatch(""):
        raise ValueError(
            f"split pattern {source!r} matches the empty string, so it cannot cut text into chunks; "
            "make every alternative consume at least one character"
        )
    return source


@functools.lru_cache(maxsize=32)
def compile_pattern(source: str) -> regex.Pattern:
    """Compile a split pattern once (cached), with a clear error if it is not a valid regex."""
    try:
        return regex.compile(source)
    except regex.error as exc:
        raise ValueError(f"split pattern {source!r} is not a valid regex: {exc}") from None


def pattern_name(source: str) -> str | None:
    """The built-in name of a pattern source, or None for a custom pattern."""
    for name, src in PATTERNS.items():
        if src == source:
            return name
    return None


def split(text: str, pattern: str = "gpt4") -> list[str]:
    """Cut ``text`` into the chunks that BPE merges will work inside.

    Raises:
        ValueError: if the pattern skips part of the text. The built-in patterns
            never do (their alternatives cover every character); a custom one
            might, and silently dropping text would break ``decode(encode(s)) == s``.
    """
    return split_compiled(text, compile_pattern(resolve_pattern(pattern)))


def split_compiled(text: str, compiled: regex.Pattern) -> list[str]:
    """`split` with an already compiled pattern (the hot path of encoding and training)."""
    chunks = compiled.findall(text)
    # subtle: findall skips characters no alternative matches; check coverage (cheap: one sum).
    if sum(map(len, chunks)) != len(text):
        covered = 0
        for m in compiled.finditer(text):
            if m.start() != covered:
                break
            covered = m.end()
        raise ValueError(
            f"split pattern {compiled.pattern!r} skips {text[covered:covered + 10]!r} at index {covered}; "
            "the chunks must cover the whole text, so add an alternative that matches it (for example end it with |[\\s\\S])"
        )
    return chunks
