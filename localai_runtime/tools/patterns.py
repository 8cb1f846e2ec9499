"""Regular expressions as a small grammar tree, for custom tools' grammars (Lark terminals,
``syntax: regex``).

:func:`parse_regex` reads the part of regex syntax whose language a context-free grammar can
state: literals and escapes, ``.``, classes (ranges, negation, ``\\d \\w \\s`` and their
negations), groups (plain, ``(?:...)``, named), ``|``, and ``* + ? {m} {m,} {m,n}`` (lazy or not:
the language is the same). Anything else (anchors, lookarounds, back-references, inline flags) is
a :class:`GrammarConstructError` naming it, which the caller turns into a 400 naming its field.

The tree is tuples: ``("lit", text)``, ``("set", ranges)`` (sorted, merged, inclusive code-point
ranges), ``("seq", items)``, ``("alt", options)``, ``("rep", item, low, high or None)``, and
(from Lark) ``("ref", name)``.
"""

from __future__ import annotations

import re
from typing import Any

Node = tuple[Any, ...]
Ranges = tuple[tuple[int, int], ...]
MAX_CODE_POINT = 0x10FFFF
MAX_NESTING = 100
"""Groups nested deeper than this are refused (the parser reads groups recursively)."""


class GrammarConstructError(ValueError):
    """A construct the translation to GBNF does not take; the message names it."""


def merged(ranges: list[tuple[int, int]]) -> Ranges:
    out: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return tuple(out)


def complement(ranges: Ranges) -> Ranges:
    out, start = [], 0
    for low, high in ranges:
        if low > start:
            out.append((start, low - 1))
        start = high + 1
    if start <= MAX_CODE_POINT:
        out.append((start, MAX_CODE_POINT))
    return tuple(out)


_DIGIT = ((48, 57),)
_WORD = merged([(48, 57), (65, 90), (95, 95), (97, 122)])
_SPACE = merged([(9, 13), (32, 32)])
_CLASSES = {"d": _DIGIT, "w": _WORD, "s": _SPACE, "D": complement(_DIGIT), "W": complement(_WORD),
            "S": complement(_SPACE)}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_REFUSED_ESCAPES = {"b": "a word boundary (\\b)", "B": "a word boundary (\\B)", "A": "an anchor (\\A)",
                    "Z": "an anchor (\\Z)", "z": "an anchor (\\z)", "G": "an anchor (\\G)"}
NEWLINE = ((10, 10),)
_LONGEST_COUNT = 22
"""``{`` and ``}`` of the longest count read (``{m,n}`` of two 10-digit numbers); a longer one is
literal text (Python's ``re`` reads it as a count, and refuses it as too large)."""


_SURROGATES = (0xD800, 0xDFFF)
_SURROGATE = re.compile("[\ud800-\udfff]")


def refuse_surrogates(text: str, where: str) -> None:
    """A lone surrogate (U+D800 to U+DFFF, which no UTF-8 text holds) in ``text`` is refused."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise GrammarConstructError(f"{where} holds the lone surrogate U+{ord(found.group()):04X} at position "
                                    f"{found.start()}, which no text can hold")


class _Reader:
    def __init__(self, pattern: str, dot_all: bool) -> None:
        self.text = pattern
        self.at = 0
        self.dot_all = dot_all

    def peek(self, ahead: int = 0) -> str:
        index = self.at + ahead
        return self.text[index] if index < len(self.text) else ""

    def take(self) -> str:
        char = self.peek()
        if not char:
            raise GrammarConstructError(f"the pattern {self.text!r} ends too soon")
        self.at += 1
        return char

    def refuse(self, what: str) -> GrammarConstructError:
        return GrammarConstructError(f"{what} at position {self.at} of the pattern {self.text!r} cannot be "
                                     "translated to a grammar")


def parse_regex(pattern: str, *, dot_all: bool = False) -> Node:
    """The tree of ``pattern`` (``dot_all``: ``.`` matches a newline too, as the ``s`` flag says)."""
    reader = _Reader(pattern, dot_all)
    node = _alternatives(reader, 0)
    if reader.peek():
        raise reader.refuse(f"an unmatched {reader.peek()!r}")
    return node


def _alternatives(reader: _Reader, depth: int) -> Node:
    options = [_sequence(reader, depth)]
    while reader.peek() == "|":
        reader.take()
        options.append(_sequence(reader, depth))
    return options[0] if len(options) == 1 else ("alt", options)


def _sequence(reader: _Reader, depth: int) -> Node:
    items: list[Node] = []
    while reader.peek() not in ("", "|", ")"):
        items.append(_quantified(reader, _atom(reader, depth)))
    return items[0] if len(items) == 1 else ("seq", items)


def _quantified(reader: _Reader, item: Node) -> Node:
    char = reader.peek()
    count = _count(reader) if char == "{" else None
    if char in ("*", "+", "?"):
        reader.take()
        item = ("rep", item, 1 if char == "+" else 0, 1 if char == "?" else None)
    elif count is not None:
        reader.at = reader.text.index("}", reader.at) + 1
        item = ("rep", item, *count)
    else:
        return item
    if reader.peek() == "?":  # lazy: the same language
        reader.take()
    elif reader.peek() == "+":
        raise reader.refuse("a possessive quantifier")
    if reader.peek() in ("*", "+", "?") or reader.peek() == "{" and _count(reader) is not None:
        raise reader.refuse("a repeated quantifier")  # as Python's re refuses it
    return item


def _count(reader: _Reader) -> tuple[int, int | None] | None:
    """The ``{m}``, ``{m,}``, ``{m,n}`` or ``{,n}`` at the reader (``m`` left out is 0, as Python
    reads it), or None (a literal ``{``, as Python reads it). A count with ``n < m`` is refused,
    as Python's ``re`` refuses it. Only the next :data:`_LONGEST_COUNT` characters are searched
    for the closing brace, so a pattern of many ``{`` is read in linear time."""
    end = reader.text.find("}", reader.at, reader.at + _LONGEST_COUNT)
    body = reader.text[reader.at + 1:end] if end > 0 else ""
    low, comma, high = body.partition(",")
    if not (low.isdigit() or comma and not low) or (high and not high.isdigit()):
        return None
    count = int(low or "0"), (int(high) if high else None) if comma else int(low)
    if count[1] is not None and count[1] < count[0]:
        raise reader.refuse(f"the count {{{body}}}, whose maximum is below its minimum,")
    return count


def _atom(reader: _Reader, depth: int) -> Node:
    char = reader.take()
    if char == "(":
        return _group(reader, depth + 1)
    if char == "[":
        return ("set", _class(reader))
    if char == ".":
        return ("set", complement(()) if reader.dot_all else complement(NEWLINE))
    if char == "\\":
        return _escape(reader, in_class=False)
    if char in ("^", "$"):
        raise reader.refuse(f"an anchor ({char})")
    if char in ("*", "+", "?"):
        raise reader.refuse(f"a quantifier ({char}) with nothing to repeat")
    return ("lit", char)


def _group(reader: _Reader, depth: int) -> Node:
    if depth > MAX_NESTING:
        raise reader.refuse(f"groups nested more than {MAX_NESTING} deep")
    if reader.peek() == "?":
        reader.take()
        kind = reader.take()
        if kind == "P" and reader.peek() == "<" or kind == "<" and reader.peek() not in ("=", "!"):
            close = reader.text.find(">", reader.at)
            if close < 0:
                raise reader.refuse("an unclosed group name")
            reader.at = close + 1
        elif kind != ":":
            raise reader.refuse(f"the group construct (?{kind}")
    node = _alternatives(reader, depth)
    if reader.peek() != ")":
        raise reader.refuse("an unclosed group")
    reader.take()
    return node


def _escape(reader: _Reader, in_class: bool) -> Node:
    char = reader.take()
    if char in _CLASSES:
        return ("set", _CLASSES[char])
    if char in _ESCAPES:
        return ("lit", _ESCAPES[char])
    if char in ("x", "u", "U"):
        width = {"x": 2, "u": 4, "U": 8}[char]
        digits = reader.text[reader.at:reader.at + width]
        if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise reader.refuse(f"a malformed \\{char} escape")
        reader.at += width
        code = int(digits, 16)
        if code > MAX_CODE_POINT or _SURROGATES[0] <= code <= _SURROGATES[1]:
            raise reader.refuse(f"the escape \\{char}{digits}, not a Unicode scalar value (a surrogate or "
                                "past U+10FFFF),")
        return ("lit", chr(code))
    if char.isdigit():
        return ("lit", _octal(reader, char))
    if char in _REFUSED_ESCAPES and not in_class:
        raise reader.refuse(_REFUSED_ESCAPES[char])
    if char.isalnum():
        raise reader.refuse(f"the escape \\{char}")
    return ("lit", char)


def _octal(reader: _Reader, first: str) -> str:
    """The character of an octal escape, as Python reads one: ``\\0`` and up to two more octal
    digits, or three octal digits; any other digits are a back-reference, refused."""
    rest = reader.text[reader.at:reader.at + 2]
    digits = len(rest) - len(rest.lstrip("01234567"))
    if first == "0":
        taken = min(digits, 2)
    elif first in "01234567" and digits == 2:
        taken = 2
    else:
        raise reader.refuse("a back-reference")
    code = int(first + rest[:taken], 8)
    reader.at += taken
    if code > 0o377:
        raise reader.refuse(f"the octal escape \\{first}{rest[:taken]}, past \\377,")
    return chr(code)


def _class(reader: _Reader) -> Ranges:
    negated = reader.peek() == "^"
    if negated:
        reader.take()
    ranges: list[tuple[int, int]] = []
    first = True
    while first or reader.peek() != "]":
        first = False
        low = _class_item(reader)
        if isinstance(low, tuple):
            ranges.extend(low)
            continue
        if reader.peek() == "-" and reader.peek(1) not in ("]", ""):
            reader.take()
            high = _class_item(reader)
            if isinstance(high, tuple) or high < low:
                raise reader.refuse("a bad range in a class")
            ranges.append((low, high))
        else:
            ranges.append((low, low))
    reader.take()
    result = merged(ranges)
    return complement(result) if negated else result


def _class_item(reader: _Reader) -> int | Ranges:
    char = reader.take()
    if char == "[" and reader.peek() in (":", "=", "."):
        raise reader.refuse("a POSIX class")
    if char != "\\":
        return ord(char)
    if reader.peek() == "b":
        reader.take()
        return 8
    node = _escape(reader, in_class=True)
    return node[1] if node[0] == "set" else ord(node[1])
