"""A custom tool's input grammar as GBNF for its call's ``{"input": "<text>"}``.

A custom tool (Responses' ``type: custom``) takes free text, optionally in a grammar
(``format: {type: grammar, syntax: lark | regex, definition}``). The model calls it here as it
calls a function, in its own call format, with one argument: ``{"input": "<the text, as a JSON
string>"}``. :func:`input_grammar` writes the GBNF of that object whose string, once decoded,
is in the tool's grammar (a left-recursive rule, which llama.cpp's grammars cannot have, is
refused naming it): every literal and character class of the grammar (:mod:`.lark`,
:mod:`.patterns`) is written in its JSON-escaped form (a newline as ``\\n``, a quote as
``\\"``). Control characters other than tab, newline and carriage return are left out of
classes (a narrower language, never a wider one). A construct the translation does not take
is a 400 naming ``<param>.definition`` and the construct.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from localai_runtime.errors import InvalidRequestError
from localai_runtime.tools.lark import parse_lark
from localai_runtime.tools.patterns import GrammarConstructError, Node, Ranges, complement, merged, parse_regex

INPUT_PARAMETERS: Mapping[str, Any] = {
    "type": "object", "properties": {"input": {"type": "string", "description": "The tool's input text."}},
    "required": ["input"], "additionalProperties": False,
}
"""The arguments a custom tool's call is written with, as the model's prompt lists them."""

MAX_DEFINITION = 100_000
"""The longest grammar definition translated (Codex's apply_patch grammar has 626 characters); the
GBNF it becomes is then measured against the registration's ``grammar_limits``."""
_ESCAPED = {ord('"'): '\\"', ord("\\"): "\\\\", 10: "\\n", 13: "\\r", 9: "\\t"}
"""Characters a JSON string writes escaped, and how (the only control characters generated)."""
_PLAIN_EXCLUDED = merged([(0, 0x1F), (ord('"'), ord('"')), (ord("\\"), ord("\\"))])


def input_grammar(form: Mapping[str, Any] | None, param: str) -> str | None:
    """The GBNF of a custom tool's arguments for its ``format`` (``param`` names the format
    field), or None when its input is unconstrained text (the arguments schema is then enough)."""
    if form is None or form.get("type", "text") == "text":
        return None
    if form.get("type") != "grammar":
        raise InvalidRequestError(f"unknown custom tool format {form.get('type')!r}", param=f"{param}.type")
    syntax, definition = form.get("syntax"), form.get("definition")
    if not isinstance(definition, str):
        raise InvalidRequestError("a grammar format needs its 'definition'", param=f"{param}.definition")
    if len(definition) > MAX_DEFINITION:
        raise InvalidRequestError(f"a grammar definition of {len(definition)} characters is longer than the "
                                  f"{MAX_DEFINITION} this server translates", param=f"{param}.definition")
    try:
        if syntax == "lark":
            rules = parse_lark(definition)
        elif syntax == "regex":
            rules = {"start": parse_regex(definition)}
        else:
            raise InvalidRequestError(f"unknown grammar syntax {syntax!r}; lark and regex are",
                                      param=f"{param}.syntax")
        refuse_left_recursion(rules)
    except GrammarConstructError as exc:
        raise InvalidRequestError(f"this {syntax} grammar cannot be enforced: {exc}",
                                  param=f"{param}.definition") from exc
    return _Writer(rules).gbnf()


def _nullable(node: Node, empty: set[str]) -> bool:
    kind = node[0]
    if kind in ("lit", "set"):
        return kind == "lit" and not node[1]
    if kind == "ref":
        return node[1] in empty
    if kind == "rep":
        return node[2] == 0 or _nullable(node[1], empty)
    parts = [_nullable(item, empty) for item in node[1]]
    return all(parts) if kind == "seq" else any(parts)


def _first(node: Node, empty: set[str]) -> set[str]:
    """The rules ``node`` may begin with."""
    kind = node[0]
    if kind == "ref":
        return {node[1]}
    if kind == "rep":
        return _first(node[1], empty)
    found: set[str] = set()
    for item in node[1] if kind in ("seq", "alt") else ():
        found |= _first(item, empty)
        if kind == "seq" and not _nullable(item, empty):
            break
    return found


def refuse_left_recursion(rules: dict[str, Node]) -> None:
    """A rule that may begin with itself (llama.cpp's grammars cannot have one) is refused, named."""
    empty: set[str] = set()
    while True:
        more = {name for name, node in rules.items() if name not in empty and _nullable(node, empty)}
        if not more:
            break
        empty |= more
    graph = {name: _first(node, empty) for name, node in rules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in graph:
        todo: list[tuple[str, bool]] = [(root, False)]
        while todo:
            name, leaving = todo.pop()
            if leaving:
                state[name] = 2
                continue
            if state.get(name) == 1:
                raise GrammarConstructError(f"left recursion: the rule {name!r} may begin with itself")
            if state.get(name) == 2:
                continue
            state[name] = 1
            todo.append((name, True))
            todo.extend((child, False) for child in graph[name] if state.get(child) != 2)


def _name(rule: str) -> str:
    return "r-" + re.sub(r"[^a-zA-Z0-9]", "-", rule)


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


class _Writer:
    """Writes rules as GBNF, each distinct character class once as a rule of its own."""

    def __init__(self, rules: Mapping[str, Node]) -> None:
        self.rules = rules
        self.names = {name: _name(name) for name in rules}
        if len(set(self.names.values())) < len(self.names):
            self.names = {name: f"g{i}" for i, name in enumerate(rules)}
        self.classes: dict[Ranges, str] = {}
        self.lines: list[str] = []

    def gbnf(self) -> str:
        body = [f"{self.names[name]} ::= {self.node(node)}" for name, node in self.rules.items()]
        root = f'root ::= "{{\\"input\\": \\"" {self.names["start"]} "\\"}}"'
        return "\n".join([root, *body, *self.lines]) + "\n"

    def node(self, node: Node) -> str:
        kind = node[0]
        if kind == "lit":
            return _literal(json.dumps(node[1], ensure_ascii=False)[1:-1]) if node[1] else '""'
        if kind == "ref":
            return self.names[node[1]]
        if kind == "set":
            return self.character(node[1])
        if kind == "seq":
            return " ".join(self.node(item) for item in node[1]) if node[1] else '""'
        if kind == "alt":
            return "( " + " | ".join(self.node(option) for option in node[1]) + " )"
        item, low, high = self.node(node[1]), node[2], node[3]
        suffix = {(0, None): "*", (1, None): "+", (0, 1): "?"}.get((low, high))
        if suffix is None:
            suffix = f"{{{low},{'' if high is None else high}}}" if high != low else f"{{{low}}}"
        return f"( {item} ){suffix}"

    def character(self, ranges: Ranges) -> str:
        """A rule for one character of ``ranges``, as a JSON string writes it."""
        if ranges not in self.classes:
            name = f"c-{len(self.classes)}"
            self.classes[ranges] = name
            plain = _intersect(ranges, complement(_PLAIN_EXCLUDED))
            options = [f"[{''.join(_span(low, high) for low, high in plain)}]"] if plain else []
            options += [_literal(escaped) for code, escaped in _ESCAPED.items() if _contains(ranges, code)]
            if not options:
                raise InvalidRequestError("a character class of the grammar allows no character that can be "
                                          "generated (only control characters)")
            self.lines.append(f"{name} ::= {' | '.join(options)}")
        return self.classes[ranges]


def _contains(ranges: Ranges, code: int) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _intersect(first: Ranges, second: Ranges) -> Ranges:
    out = []
    for low, high in first:
        for other_low, other_high in second:
            if max(low, other_low) <= min(high, other_high):
                out.append((max(low, other_low), min(high, other_high)))
    return merged(out)


def _char(code: int) -> str:
    if chr(code).isalnum() and code < 128:
        return chr(code)
    return f"\\x{code:02X}" if code < 0x100 else f"\\u{code:04X}" if code < 0x10000 else f"\\U{code:08X}"


def _span(low: int, high: int) -> str:
    return _char(low) if low == high else f"{_char(low)}-{_char(high)}"
