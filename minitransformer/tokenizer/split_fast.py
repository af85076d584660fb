"""The split, at speed: the built-in patterns run by Python's own ``re`` engine.

Cutting text into chunks is about half of what encoding costs once the merges
are fast. The ``regex`` package (which understands ``\\p{L}``) is about 2.5x
slower than the standard library's ``re`` on the same pattern, but ``re`` has no
``\\p{...}`` classes, and its ``\\s`` and Unicode tables differ from ``regex``'s
(``re`` counts U+001C..U+001F as spaces; each follows its own Unicode version).
So this module *derives* plain character classes from ``regex`` itself and
rewrites a built-in pattern with them:

- ``\\p{L}``, ``\\p{N}`` and ``\\s`` become explicit ranges of code points,
  computed by asking ``regex`` about every code point of the Basic Multilingual
  Plane (BMP, U+0000..U+FFFF), so both engines see the same classes there;
- characters beyond the BMP (emoji, historic scripts) would make ``re`` scan a
  long list of ranges for every character, so they never reach it: each is
  replaced by a BMP *stand-in* of the same kind (a letter, a number, or
  neither), the text is split, and the chunks that held one are cut again from
  the original text at the same positions (a stand-in is one code point, like
  the character it replaces, so positions do not move). Only a stretch around
  such characters is treated this way, between two *safe cuts* (a space after
  an ASCII letter, where both patterns always end a chunk); the rest of the
  text is split as it is.

The rest of the pattern (possessive quantifiers, ``(?i:...)``, ``$``,
lookaheads) means the same in both engines; the tests check the two splits
equal on every code point and on random text. Custom patterns, and Python
versions whose ``re`` lacks possessive quantifiers (before 3.11), keep the
``regex`` split.

    >>> split_fast = fast_splitter(GPT4_SPLIT_PATTERN)
    >>> split_fast("Hello world!! 👋🏽 x = 12345")
    ['Hello', ' world', '!!', ' 👋🏽', ' x', ' =', ' ', '123', '45']
"""

from __future__ import annotations

import functools
import re
import string
from typing import Callable, Optional

import numpy as np
import regex

from .patterns import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN

# The classes a built-in pattern uses, by how the pattern writes them.
CLASSES = {r"\p{L}": "L", r"\p{N}": "N", r"\s": "s"}
# One BMP stand-in per kind of character beyond the BMP (none of them is a space
# or a letter of the pattern's (?i:'s|'t|...) contractions; checked by the tests).
# YI SYLLABLE IT, ARABIC-INDIC DIGIT ZERO, OBJECT REPLACEMENT CHARACTER:
STAND_INS = {"L": "\ua000", "N": "\u0660", "other": "\ufffc"}
BEYOND_BMP = re.compile("[\U00010000-\U0010ffff]")
SAFE_CUT = re.compile("[A-Za-z] ")  # see _cut_before


@functools.lru_cache(maxsize=None)
def bmp_class_body(kind: str) -> str:
    """The code points of the BMP in class ``kind`` (``"L"``, ``"N"``, ``"s"``), as ``re`` set syntax.

    ``"\\u0041-\\u005a\\u0061-\\u007a..."``: ranges without the surrounding brackets,
    so several bodies can be joined inside one ``[...]`` or ``[^...]``.
    """
    every = "".join(map(chr, range(0x10000)))  # all of the BMP, surrogates included
    source = {"L": r"\p{L}+", "N": r"\p{N}+", "s": r"\s+"}[kind]
    ranges = []
    for m in regex.finditer(source, every):  # each run of consecutive code points in the class
        first, last = m.start(), m.end() - 1
        ranges.append(f"\\u{first:04x}" if first == last else f"\\u{first:04x}-\\u{last:04x}")
    return "".join(ranges)


def translate(source: str) -> str:
    """Rewrite a split pattern for ``re``: each ``\\p{L}``, ``\\p{N}``, ``\\s``, ``\\S`` becomes an explicit BMP class.

    Inside brackets a class adds its ranges (``[^\\s\\p{L}]`` -> ``[^<spaces><letters>]``);
    outside it gets brackets of its own (``\\p{L}++`` -> ``[<letters>]++``).
    """
    out, i, in_brackets = [], 0, False
    while i < len(source):
        name = next((n for n in CLASSES if source.startswith(n, i)), None)
        if name is not None:
            body = bmp_class_body(CLASSES[name])
            out.append(body if in_brackets else f"[{body}]")
            i += len(name)
        elif source.startswith(r"\S", i):
            if in_brackets:
                raise ValueError(r"\S inside brackets is not supported by the fast split")
            out.append(f"[^{bmp_class_body('s')}]")
            i += 2
        elif source[i] == "\\":  # any other escape is copied as it is (\r, \n, \', ...)
            out.append(source[i:i + 2])
            i += 2
        else:
            in_brackets = {"[": True, "]": False}.get(source[i], in_brackets)
            out.append(source[i])
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=None)
def _compiled(source: str) -> Optional[re.Pattern]:
    try:
        return re.compile(translate(source))
    except re.error:  # e.g. possessive quantifiers before Python 3.11
        return None


@functools.lru_cache(maxsize=4096)
def stand_in(char: str) -> str:
    """The BMP character that plays ``char``'s part (a letter, a number, or neither) in the split."""
    if regex.match(r"\p{L}", char):
        return STAND_INS["L"]
    return STAND_INS["N"] if regex.match(r"\p{N}", char) else STAND_INS["other"]


def fast_splitter(source: str) -> Optional[Callable[[str], list[str]]]:
    """A function that splits text exactly like ``regex`` with ``source``, or None if there is none.

    Only the built-in patterns (``gpt2``, ``gpt4``) are rewritten; they are the
    ones checked equal to the ``regex`` split.
    """
    if source not in (GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN):
        return None
    compiled = _compiled(source)
    if compiled is None:
        return None
    return functools.partial(_split, compiled.findall)


def _split(findall, text: str) -> list[str]:
    if text.isascii() or BEYOND_BMP.search(text) is None:  # (isascii is a flag lookup, no scan)
        return findall(text)  # the usual case: one pass of re over the text
    # Split the stretches around characters beyond the BMP with stand-ins, the rest as it is.
    chunks, done = None, 0
    for m in BEYOND_BMP.finditer(text):
        if m.start() < done:
            continue  # already inside the last stretch
        start, end = _cut_before(text, m.start(), done), _cut_after(text, m.end())
        before = findall(text[done:start])
        if chunks is None:
            chunks = before  # note: extend the first (often large) list, never copy it
        else:
            chunks += before
        chunks += _split_with_stand_ins(findall, text[start:end])
        done = end
    chunks += findall(text[done:])
    return chunks


def _cut_before(text: str, where: int, floor: int) -> int:
    """The last safe cut in ``text[floor:where]``, or ``floor``.

    A safe cut is a space right after an ASCII letter: no chunk of either
    built-in pattern holds a letter and then a space, and no alternative looks
    past the space, so the text on each side splits the same alone or together.
    """
    cut = text.rfind(" ", floor, where)
    while cut > floor and text[cut - 1] not in string.ascii_letters:
        cut = text.rfind(" ", floor, cut)
    return max(cut, floor)


def _cut_after(text: str, where: int) -> int:
    """The first safe cut at or after ``where`` (see `_cut_before`), or the end of the text."""
    m = SAFE_CUT.search(text, where)
    return m.start() + 1 if m else len(text)


def _split_with_stand_ins(findall, text: str) -> list[str]:
    # Split a copy where every character beyond the BMP has a BMP stand-in ...
    chunks = findall(BEYOND_BMP.sub(lambda m: stand_in(m.group()), text))
    # ... then cut the chunks that contain one again from the original text.
    ends = np.cumsum(np.fromiter(map(len, chunks), np.int64, len(chunks)))  # (n_chunks,) end of each chunk
    where = [m.start() for m in BEYOND_BMP.finditer(text)]
    for k in np.unique(np.searchsorted(ends, where, side="right")).tolist():
        start = int(ends[k - 1]) if k else 0
        chunks[k] = text[start:int(ends[k])]
    return chunks
