"""Reading calls out of generated text, whole or as it streams.

The call grammar writes the format's literals exactly, so the text after the trigger is a known
frame around ``{"name": "<name>", "<key>": <arguments>}``; :class:`CallScanner` walks that frame
as text arrives and reports each call's name once, then its raw argument text in fragments.
The argument text is passed on as generated, so the fragments of a stream add up, byte for byte,
to the arguments of the same answer given whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from localai_runtime.tools.formats import CallFormat


@dataclass
class CallDelta:
    """New output of one call: its ``name`` the first time, then argument text."""

    index: int
    name: str | None = None
    arguments: str = ""


@dataclass
class _Call:
    name: str = ""
    arguments: str = ""


@dataclass
class CallScanner:
    """Fed the text generated after the trigger (the call grammar's output), piece by piece."""

    form: CallFormat
    skip: str = ""
    """Text of the frame already written before feeding started (the trigger)."""
    calls: list[_Call] = field(default_factory=list)
    _text: str = ""
    _at: int = 0
    _state: str = "head"
    _depth: int = 0
    _in_string: bool = False
    _escaped: bool = False

    def __post_init__(self) -> None:
        self._text = self.skip
        self._at = 0

    def _expect(self, literal: str) -> bool | None:
        """True once ``literal`` is at the cursor (consumed), None while the text is too short."""
        end = self._at + len(literal)
        if len(self._text) < end:
            if not literal.startswith(self._text[self._at:]):
                raise ValueError(f"expected {literal!r} in the call text, got {self._text[self._at:]!r}")
            return None
        if self._text[self._at:end] != literal:
            raise ValueError(f"expected {literal!r} in the call text, got {self._text[self._at:end]!r}")
        self._at = end
        return True

    def feed(self, text: str) -> list[CallDelta]:
        self._text += text
        deltas: list[CallDelta] = []
        while self._at < len(self._text) or self._state == "head":
            before = self._at, self._state
            self._step(deltas)
            if (self._at, self._state) == before:
                break
        return deltas

    def _step(self, deltas: list[CallDelta]) -> None:
        form = self.form
        if self._state == "head":
            lead = (form.before_all if not self.calls else form.between) + form.before_call + '{"name": "'
            if self._expect(lead):
                self.calls.append(_Call())
                self._state = "name"
        elif self._state == "name":
            end = self._text.find('"', self._at)
            if end >= 0:
                call = self.calls[-1]
                call.name = json.loads(self._text[self._at - 1:end + 1])
                self._at = end + 1
                self._state = "key"
                deltas.append(CallDelta(len(self.calls) - 1, name=call.name))
        elif self._state == "key":
            if self._expect(f', "{form.key}": '):
                self._state = "arguments"
        elif self._state == "arguments":
            self._arguments(deltas)
        elif self._state == "tail":
            rest = self._text[self._at:].lstrip()
            if rest:
                self._at = len(self._text) - len(rest)
                if self._expect("}" + form.after_call):
                    self._state = "next"
        elif self._state == "next":
            rest = self._text[self._at:]
            if form.between and rest.startswith(form.between):
                self._state = "head"  # which consumes the separator with the next call's opening
            elif form.after_all and rest.startswith(form.after_all):
                self._at += len(form.after_all)
                self._state = "done"
            elif not (form.between.startswith(rest) or form.after_all.startswith(rest)):
                raise ValueError(f"unexpected text after a call: {rest!r}")

    def _arguments(self, deltas: list[CallDelta]) -> None:
        start = position = self._at
        text = self._text
        while position < len(text):
            char = text[position]
            position += 1
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._state = "tail"
                    break
        fragment = text[start:position]
        self._at = position
        if fragment:
            self.calls[-1].arguments += fragment
            deltas.append(CallDelta(len(self.calls) - 1, arguments=fragment))

    @property
    def complete(self) -> bool:
        """Every call begun has its whole arguments."""
        return bool(self.calls) and self._state in ("tail", "next", "done")
