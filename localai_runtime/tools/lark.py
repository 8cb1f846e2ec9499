"""The Lark grammars of custom tools, read into rules of :mod:`.patterns` trees.

OpenAI's custom tools give their input's grammar in Lark's syntax (``format: {type: grammar,
syntax: lark, definition}``); Codex's ``apply_patch`` is one (``tests/data/tool_apply_patch.lark``).
:func:`parse_lark` reads the subset such grammars use: rule and terminal definitions (``name:``,
``?name:``, ``!name:``, ``NAME:``, priorities ``name.2:``), alternatives on one line or continued
on lines beginning with ``|``, ``"literals"``, ``"a".."z"`` ranges, ``/regex/`` terminals (flag
``s``), groups ``( )``, optional ``[ ]``, ``? * +``, ``~ n`` and ``~ n..m``, aliases ``-> name``,
comments (``//`` and ``#``), and ``%import common.NAME`` (``-> ALIAS``; ``common (A, B)``) for
the common terminals below. Any other construct (``%ignore``, ``%declare``, templates, a
literal's ``i`` flag, an undefined name...) is a :class:`~.patterns.GrammarConstructError`
naming it. The rules keep
Lark's meaning: the language of ``start``.
"""

from __future__ import annotations

import ast
import re
import warnings

from localai_runtime.tools.patterns import MAX_NESTING, GrammarConstructError, Node, parse_regex, refuse_surrogates

_TOKEN = re.compile(r"""
    (?P<space>[ \t\f]+|\\\r?\n)
  | (?P<comment>(?://|\#)[^\n]*)
  | (?P<newline>\r?\n)
  | (?P<string>"(?:[^"\\\n]|\\.)*"i?)
  | (?P<regex>/(?!/)(?:[^/\\\n]|\\.)+/[imslux]*)
  | (?P<range>\.\.)
  | (?P<arrow>->)
  | (?P<directive>%[a-z]+)
  | (?P<name>[?!]?[_a-zA-Z][_a-zA-Z0-9]*(?:\.-?\d+)?)
  | (?P<number>\d+)
  | (?P<op>[:|()\[\]?*+~,.{}])
  | (?P<other>.)
""", re.VERBOSE)

COMMON: dict[str, str] = {
    "LF": r'"\n"', "CR": r'"\r"', "NEWLINE": "(CR? LF)+", "WS_INLINE": r'(" "|/\t/)+', "WS": r"/[ \t\f\r\n]/+",
    "DIGIT": '"0".."9"', "HEXDIGIT": '"a".."f" | "A".."F" | DIGIT', "INT": "DIGIT+", "SIGNED_INT": '["+"|"-"] INT',
    "LCASE_LETTER": '"a".."z"', "UCASE_LETTER": '"A".."Z"', "LETTER": "UCASE_LETTER | LCASE_LETTER",
    "WORD": "LETTER+", "CNAME": '("_"|LETTER) ("_"|LETTER|DIGIT)*', "DECIMAL": 'INT "." INT? | "." INT',
    "NUMBER": "DECIMAL | INT", "SH_COMMENT": r"/#[^\n]*/", "CPP_COMMENT": r"/\/\/[^\n]*/",
}
"""The terminals of Lark's ``common.lark`` this reader knows, in Lark's syntax."""


def parse_lark(definition: str) -> dict[str, Node]:
    """The rules of ``definition`` by name (``start`` among them), each checked to refer only
    to defined names."""
    rules: dict[str, Node] = {}
    _Parser(_tokens(definition), rules).statements()
    if "start" not in rules:
        raise GrammarConstructError("the grammar has no 'start' rule")
    for name, node in list(rules.items()):
        for used in _references(node):
            if used not in rules:
                _import_common(used, rules, f"the name {used!r} (used by {name!r}) is not defined")
    return rules


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup or "other"
        if kind == "other":
            raise GrammarConstructError(f"unexpected {match.group()!r} at position {match.start()}")
        if kind not in ("space", "comment"):
            tokens.append((kind, match.group()))
    tokens.append(("newline", "\n"))
    return tokens


def _import_common(name: str, rules: dict[str, Node], missing: str, alias: str | None = None) -> None:
    if name not in COMMON:
        raise GrammarConstructError(missing)
    _Parser(_tokens(f"{alias or name}: {COMMON[name]}"), rules).statements()
    for used in _references(rules[alias or name]):
        if used not in rules:
            _import_common(used, rules, missing)


def _literal(token: str) -> str:
    """A Lark string's text (its escapes are Python's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unknown escape such as "\d" is kept as written, as Python does
        try:
            text = ast.literal_eval(token)
        except (SyntaxError, ValueError) as exc:
            raise GrammarConstructError(f"the literal {token} is malformed") from exc
    refuse_surrogates(text, f"the literal {token}")
    return text


def _references(node: Node) -> list[str]:
    found, todo = [], [node]
    while todo:
        current = todo.pop()
        if current[0] == "ref":
            found.append(current[1])
        elif current[0] in ("seq", "alt"):
            todo.extend(current[1])
        elif current[0] == "rep":
            todo.append(current[1])
    return found


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], rules: dict[str, Node]) -> None:
        self.tokens = tokens
        self.at = 0
        self.rules = rules

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if value is not None and token[1] != value:
            raise GrammarConstructError(f"expected {value!r}, found {token[1] or 'the end'!r}")
        self.at += 1
        return token

    def statements(self) -> None:
        while self.peek()[0] != "end":
            kind, value = self.peek()
            if kind == "newline":
                self.take()
            elif kind == "directive":
                self.directive()
            elif kind == "name":
                self.definition()
            else:
                raise GrammarConstructError(f"a statement cannot begin with {value!r}")

    def directive(self) -> None:
        _, value = self.take()
        if value != "%import":
            raise GrammarConstructError(f"the directive {value} is not supported")
        _, module = self.take()
        if module != "common":
            raise GrammarConstructError(f"%import from {module!r}: only Lark's 'common' terminals are known here")
        if self.peek()[1] == ".":
            self.take()
            names = [self.take()[1]]
        else:
            self.take("(")
            names = [self.take()[1]]
            while self.peek()[1] == ",":
                self.take()
                names.append(self.take()[1])
            self.take(")")
        alias = None
        if self.peek()[0] == "arrow":
            self.take()
            alias = self.take()[1]
        for name in names:
            _import_common(name, self.rules, f"%import common.{name}: not a common terminal known here",
                           alias if len(names) == 1 else None)

    def definition(self) -> None:
        _, head = self.take()
        name = head.lstrip("?!").split(".")[0]
        if self.peek()[1] == "{":
            raise GrammarConstructError(f"templates ({name}{{...}}) are not supported")
        self.take(":")
        if name in self.rules:
            raise GrammarConstructError(f"{name!r} is defined twice")
        self.rules[name] = self.alternatives(0, top=True)

    def alternatives(self, depth: int, top: bool = False) -> Node:
        if depth > MAX_NESTING:
            raise GrammarConstructError(f"groups nested more than {MAX_NESTING} deep")
        options = [self.sequence(depth)]
        while True:
            if top and self.peek()[0] == "newline" and self._continues():
                continue
            if self.peek()[1] != "|":
                break
            self.take()
            options.append(self.sequence(depth))
        return options[0] if len(options) == 1 else ("alt", options)

    def _continues(self) -> bool:
        """At a newline: the next line goes on with ``|`` (newlines skipped) or not."""
        ahead = self.at
        while ahead < len(self.tokens) and self.tokens[ahead][0] == "newline":
            ahead += 1
        if ahead < len(self.tokens) and self.tokens[ahead][1] == "|":
            self.at = ahead
            return True
        return False

    def sequence(self, depth: int) -> Node:
        items: list[Node] = []
        while self.peek()[0] not in ("newline", "end") and self.peek()[1] not in ("|", ")", "]"):
            if self.peek()[0] == "arrow":  # an alias names the tree node, not the language
                self.take()
                kind, alias = self.take()
                if kind != "name" or alias[0] in "?!" or "." in alias:
                    raise GrammarConstructError(f"an alias '->' must be followed by a name, not {alias or 'the end'!r}")
                continue
            items.append(self.quantified(self.atom(depth)))
        return items[0] if len(items) == 1 else ("seq", items)

    def quantified(self, item: Node) -> Node:
        value = self.peek()[1]
        if value in ("?", "*", "+"):
            self.take()
            item = ("rep", item, 1 if value == "+" else 0, 1 if value == "?" else None)
        elif value == "~":
            self.take()
            low = high = self._number()
            if self.peek()[0] == "range":
                self.take()
                high = self._number()
            if high < low:
                raise GrammarConstructError(f"the repetition ~ {low}..{high} has its maximum below its minimum")
            item = ("rep", item, low, high)
        else:
            return item
        if self.peek()[1] in ("?", "*", "+", "~"):
            raise GrammarConstructError(f"a repeated operator ({value} then {self.peek()[1]})")
        return item

    def _number(self) -> int:
        kind, value = self.take()
        if kind != "number" or len(value) > 9:
            raise GrammarConstructError(f"expected a count after '~', found {value!r}")
        return int(value)

    def atom(self, depth: int) -> Node:
        kind, value = self.take()
        if value in ("(", "["):
            node = self.alternatives(depth + 1)
            self.take(")" if value == "(" else "]")
            return node if value == "(" else ("rep", node, 0, 1)
        if kind == "name" and value[0] not in "?!" and "." not in value:
            if self.peek()[1] == "{":
                raise GrammarConstructError(f"templates ({value}{{...}}) are not supported")
            return ("ref", value)
        if kind == "string":
            return self.string(value)
        if kind == "regex":
            body, _, flags = value[1:].rpartition("/")
            if set(flags) - {"s"}:
                raise GrammarConstructError(f"the regex flags {flags!r} of {value} are not supported")
            return parse_regex(body.replace("\\/", "/"), dot_all="s" in flags)
        raise GrammarConstructError(f"unexpected {value!r} in a rule")

    def string(self, value: str) -> Node:
        if value.endswith("i"):
            raise GrammarConstructError(f"the case-insensitive literal {value} is not supported")
        text = _literal(value)
        if self.peek()[0] != "range":
            return ("lit", text)
        self.take()
        kind, end = self.take()
        high = _literal(end) if kind == "string" else ""
        if len(text) != 1 or len(high) != 1 or high < text:
            raise GrammarConstructError(f"a bad range {value}..{end}: it must join two single characters, the "
                                        "first not after the second")
        return ("set", ((ord(text), ord(high)),))
