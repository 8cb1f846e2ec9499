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
from collections.abc import Callable, Mapping
from typing import Any

from localai_runtime.errors import InvalidRequestError
from localai_runtime.tools.lark import parse_lark
from localai_runtime.tools.left_recursion import refuse_left_recursion
from localai_runtime.tools.patterns import (
    GrammarConstructError,
    Node,
    Ranges,
    complement,
    merged,
    parse_regex,
    refuse_surrogates,
)

INPUT_PARAMETERS: Mapping[str, Any] = {
    "type": "object", "properties": {"input": {"type": "string", "description": "The tool's input text."}},
    "required": ["input"], "additionalProperties": False,
}
"""The arguments a custom tool's call is written with, as the model's prompt lists them."""

MAX_DEFINITION = 100_000
"""The longest grammar definition translated (Codex's apply_patch grammar has 626 characters); the
GBNF it becomes is then measured against the registration's ``grammar_limits``."""
MAX_RULES = 10_000
"""The most rules (Lark's rules and terminals, the common terminals imported included) translated."""
MAX_GBNF = 1_000_000
"""The longest GBNF a definition is translated to (a definition of many distinct character classes
writes a rule for each); the registration's ``grammar_limits`` then apply to what was written."""
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
    if not isinstance(syntax, str) or syntax not in _READERS:
        raise InvalidRequestError(f"unknown grammar syntax {syntax!r}; lark and regex are", param=f"{param}.syntax")
    try:
        refuse_surrogates(definition, "the definition")
        rules = _READERS[syntax](definition)
        if len(rules) > MAX_RULES:
            raise GrammarConstructError(f"the grammar has {len(rules)} rules, more than the {MAX_RULES} translated")
        refuse_left_recursion(rules)
        return _Writer(rules).gbnf()
    except GrammarConstructError as exc:
        raise InvalidRequestError(f"this {syntax} grammar cannot be enforced: {exc}",
                                  param=f"{param}.definition") from exc


_READERS: Mapping[str, Callable[[str], dict[str, Node]]] = {
    "lark": parse_lark, "regex": lambda definition: {"start": parse_regex(definition)}}


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
        self.size = 0
        """Characters of the class rules written so far."""

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
                raise GrammarConstructError("a character class of the grammar allows no character that can be "
                                            "generated (it has only control characters, or none)")
            self.lines.append(f"{name} ::= {' | '.join(options)}")
            self.size += len(self.lines[-1])
            if self.size > MAX_GBNF:
                raise GrammarConstructError(f"its character classes alone take more than {MAX_GBNF} characters "
                                            "of GBNF")
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
