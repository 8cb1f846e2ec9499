"""The cost of a GBNF text to llama.cpp, measured before llama.cpp sees it.

llama.cpp parses groups recursively, writes ``n - m`` rules for each ``{m,n}`` (and copies the
item ``m`` times), and at every step follows the chain of rules that begin with another rule,
copying the stack each time: a chain of ten thousand such rules takes it a second and 600 MB.
:func:`check_gbnf` reads the text once, without recursion, and refuses (a 400 naming the field
and the limit) what is longer, deeper, more repeated or with more rules than
:class:`~localai_runtime.tools.grammar_limits.GrammarLimits` allows. What it cannot parse it
leaves to llama.cpp, whose parser refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from localai_runtime.errors import InvalidRequestError
from localai_runtime.tools.grammar_limits import GrammarLimits, refuse

_DIGITS = 9
"""Digits of a count read as a number; a longer one counts as ``10**_DIGITS`` (over any limit)."""
_GAP = r"(?:\s|\#[^\r\n]*[\r\n])*"
"""Space and comments, as llama.cpp allows them inside ``{m,n}`` (each comment ends its line)."""
_TOKEN = re.compile(rf"""
    (?P<space>[ \t\r\n]+|\#[^\r\n]*)
  | (?P<define>::=)
  | (?P<literal>"(?:[^"\\]|\\.)*"?)
  | (?P<chars>\[\^?(?:[^\]\\]|\\.)*\]?)
  | (?P<token>!?<[^>]*>?)
  | (?P<name>[a-zA-Z0-9-]+)
  | (?P<count>\{{{_GAP}\d+{_GAP}(?:,{_GAP}(?:\d+{_GAP})?)?\}})
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
"""Every alternative matches without backtracking over the rest of the text: an unclosed literal,
class or token runs to the end of the text (llama.cpp refuses it), and no two runs of space touch."""


@dataclass
class _Measure:
    limits: GrammarLimits
    param: str
    rules: int = 0
    expanded: int = 0
    depth: int = 0
    leftmost: dict[str, list[str]] = field(default_factory=dict)
    """Rule or group -> what each of its alternatives begins with (rules and groups only)."""

    def count(self, n: int) -> None:
        self.rules += n
        if self.rules > self.limits.max_rules:
            raise refuse(f"a grammar of more than {self.rules - n} rules and alternatives", self.limits.max_rules,
                         "max_rules", self.param)

    def repeat(self, text: str, item: int) -> int:
        """``{m}``, ``{m,}`` or ``{m,n}`` after an item of ``item`` elements: llama.cpp copies
        the item ``m`` times and writes ``n - m`` rules (one for ``{m,}``); returns ``m``."""
        text = re.sub(r"#[^\r\n]*", "", text)
        numbers = [int(n) if len(n) <= _DIGITS else 10**_DIGITS for n in re.findall(r"\d+", text)]
        low = numbers[0]
        high = low if "," not in text else numbers[1] if len(numbers) == 2 else None
        written = "".join(text.split())
        if high is not None and high < low:  # llama.cpp would write rules without end
            raise InvalidRequestError(f"the repetition {written} has its maximum below its minimum", param=self.param)
        if max(low, high or 0) > self.limits.max_repetition:
            raise refuse(f"the repetition {written}", self.limits.max_repetition, "max_repetition", self.param)
        self.count(1 if high is None else high - low)
        self.expanded += low * item
        return low


def check_gbnf(text: str, param: str, limits: GrammarLimits) -> None:
    """Refuse ``text`` (a 400 naming ``param``) when it is over one of ``limits``."""
    if len(text) > limits.max_length:
        raise refuse(f"a grammar of {len(text)} characters", limits.max_length, "max_length", param)
    measure = _Measure(limits, param)
    scan = _Scan(measure)
    for match in _TOKEN.finditer(text):
        if match.lastgroup != "space":
            scan.token(match.lastgroup or "other", match.group())
    if measure.expanded > limits.max_length:
        raise refuse(f"a grammar expanding to {measure.expanded} elements", limits.max_length, "max_length", param)
    _check_chains(measure)


class _Scan:
    """Reads the tokens of a GBNF text, one at a time, into a :class:`_Measure`."""

    def __init__(self, measure: _Measure) -> None:
        self.measure = measure
        self.groups = 0
        self.stack: list[str] = []
        """The rule being read, then each open group."""
        self.start = False
        """At the start of an alternative: the next rule or group is what it begins with."""
        self.item_at_start = False
        """The last item began its alternative (an optional one lets the next begin it too)."""
        self.opened_at_start: list[bool] = []
        self.item = 0
        """Elements of the last item, for ``{m,n}``."""
        self.previous = ""

    def token(self, kind: str, value: str) -> None:
        measure = self.measure
        if kind == "define" and self.previous:
            measure.count(1)
            self.stack, self.opened_at_start = [self.previous], []
            measure.leftmost.setdefault(self.previous, [])
            self.start = True
        elif kind == "name":
            self._begins(value)
            self._item(1)
        elif value == "(":
            self._open()
        elif value == ")":
            if len(self.stack) > 1:
                self.stack.pop()
            self._item(1)
            self.item_at_start = self.opened_at_start.pop() if self.opened_at_start else False
        elif value == "|":
            measure.count(1)
            self.start = True
        elif kind == "count":
            optional = measure.repeat(value, self.item) == 0
            self.start = self.start or (self.item_at_start and optional)
        elif value in "*+?":
            measure.count(1)
            self.start = self.start or (self.item_at_start and value != "+")
        else:  # a literal, a character class, a token, any character
            self._item(max(1, len(value) - 2) if kind in ("literal", "chars") else 1)
        self.previous = value if kind == "name" else ""

    def _begins(self, node: str) -> None:
        if self.start and self.stack:
            self.measure.leftmost[self.stack[-1]].append(node)

    def _item(self, size: int) -> None:
        self.item_at_start, self.start, self.item = self.start, False, size

    def _open(self) -> None:
        self.groups += 1
        name = f"({self.groups}"
        self._begins(name)
        self.measure.count(1)
        self.opened_at_start.append(self.start)
        self.stack.append(name)
        self.measure.leftmost[name] = []
        limits = self.measure.limits
        if len(self.stack) - 1 > limits.max_depth:
            raise refuse(f"groups nested {len(self.stack) - 1} deep", limits.max_depth, "max_depth", self.measure.param)
        self.start = True


def _check_chains(measure: _Measure) -> None:
    """The longest chain of rules each beginning with the next, and the number of such chains
    from one rule (llama.cpp builds a stack for each), within the limits. Iterative; a cycle is
    left recursion, which llama.cpp refuses."""
    graph, limits = measure.leftmost, measure.limits
    depth: dict[str, int] = {}
    paths: dict[str, int] = {}
    for root in graph:
        todo = [(root, False)]
        while todo:
            node, done = todo.pop()
            if done:
                children = [c for c in graph[node] if c in graph]
                depth[node] = 1 + max((depth.get(c, 0) for c in children), default=0)
                paths[node] = min(max(1, sum(paths.get(c, 1) for c in graph[node])), limits.max_rules + 1)
                if depth[node] > limits.max_depth:
                    raise refuse(f"a chain of {depth[node]} rules each beginning with the next", limits.max_depth,
                                 "max_depth", measure.param)
                if paths[node] > limits.max_rules:
                    raise refuse(f"more than {limits.max_rules} ways to begin {_named(node)}", limits.max_rules,
                                 "max_rules", measure.param)
            elif node not in depth:
                depth[node] = 0  # in progress: a cycle ends here
                todo.append((node, True))
                todo.extend((c, False) for c in graph[node] if c in graph and c not in depth)


def _named(node: str) -> str:
    return f"group {node[1:]}" if node.startswith("(") else f"rule {node!r}"
