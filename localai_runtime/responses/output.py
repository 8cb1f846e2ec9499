"""Output items built from a generation's pieces, with the stream events that announce them.

:class:`OutputBuilder` turns pieces (text, tool-call deltas, the finish reason) into the
response's ``output``: a ``message`` item with one ``output_text`` part for text, one
``function_call`` item per call of a function (with its ``namespace``, for a namespace's), one
``custom_tool_call`` per call of a custom tool (its ``input``: the text of the call's
``{"input": ...}``, streamed decoded by :class:`InputText`), in the order the model wrote them. Each step returns the
events a stream sends for it (without ``sequence_number``, which :mod:`.events` adds), so the
ids and indices in the stream, the final object and storage are the same by construction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from localai_runtime.backends import Piece
from localai_runtime.responses.items import new_id
from localai_runtime.responses.tools import CUSTOM, CallTarget

Event = dict[str, Any]


class OutputBuilder:
    def __init__(self, buffer_text: bool = False, targets: Mapping[str, CallTarget] | None = None) -> None:
        self.items: list[dict[str, Any]] = []
        self.targets = targets or {}
        """What answers each name the model calls; a name not listed is a plain function's."""
        self._inputs: dict[int, InputText] = {}  # output index of a custom call -> its input so far
        self.buffer_text = buffer_text
        """Hold text back until the end (output filters need the whole text)."""
        self._message: int | None = None  # output index of the open message item
        self._calls: dict[int, int] = {}  # the model's call index -> output index
        self.held_text = ""
        self.finish_reason: str | None = None
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.completion_tokens = 0

    def add(self, piece: Piece) -> list[Event]:
        events: list[Event] = []
        if piece.text and not self.buffer_text:
            events += self.text(piece.text)
        elif piece.text:
            self.held_text += piece.text
        for delta in piece.tool_calls or ():
            if delta.name is not None:
                events += self._close_message()
                events += self._open_call(delta.index, delta.name)
            if delta.arguments:
                events += self._arguments(self._calls[delta.index], delta.arguments)
        if piece.finish_reason is not None:
            self.finish_reason = piece.finish_reason
            self.prompt_tokens = piece.prompt_tokens
            self.cached_tokens = piece.cached_tokens
            self.completion_tokens = piece.completion_tokens
        return events

    def text(self, text: str) -> list[Event]:
        events = self._open_message()
        assert self._message is not None  # opened above
        item = self.items[self._message]
        item["content"][0]["text"] += text
        events.append({"type": "response.output_text.delta", "item_id": item["id"], "output_index": self._message,
                       "content_index": 0, "delta": text, "logprobs": []})
        return events

    def _open_message(self) -> list[Event]:
        events: list[Event] = []
        if self._message is None:
            self._message = len(self.items)
            item: dict[str, Any] = {"id": new_id("msg"), "type": "message", "status": "in_progress",
                                    "role": "assistant", "content": []}
            self.items.append(item)
            events.append({"type": "response.output_item.added", "output_index": self._message,
                           "item": _copy(item)})
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            events.append({"type": "response.content_part.added", "item_id": item["id"],
                           "output_index": self._message, "content_index": 0, "part": dict(part)})
        return events

    def _close_message(self, status: str = "completed") -> list[Event]:
        if self._message is None:
            return []
        index, self._message = self._message, None
        item = self.items[index]
        item["status"] = status
        part = item["content"][0]
        return [
            {"type": "response.output_text.done", "item_id": item["id"], "output_index": index, "content_index": 0,
             "text": part["text"], "logprobs": []},
            {"type": "response.content_part.done", "item_id": item["id"], "output_index": index, "content_index": 0,
             "part": dict(part)},
            {"type": "response.output_item.done", "output_index": index, "item": _copy(item)},
        ]

    def _open_call(self, call_index: int, name: str) -> list[Event]:
        index = len(self.items)
        self._calls[call_index] = index
        target = self.targets.get(name) or CallTarget("function", name)
        item: dict[str, Any]
        if target.kind == CUSTOM:
            self._inputs[index] = InputText()
            item = {"id": new_id("ctc"), "type": "custom_tool_call", "status": "in_progress",
                    "call_id": new_id("call"), **target.fields(), "input": ""}
        else:
            item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "call_id": new_id("call"),
                    **target.fields(), "arguments": ""}
        self.items.append(item)
        return [{"type": "response.output_item.added", "output_index": index, "item": dict(item)}]

    def _arguments(self, index: int, text: str) -> list[Event]:
        item = self.items[index]
        decoder = self._inputs.get(index)
        if decoder is None:
            item["arguments"] += text
            return [{"type": "response.function_call_arguments.delta", "item_id": item["id"], "output_index": index,
                     "delta": text}]
        delta = decoder.feed(text)
        item["input"] += delta
        return [{"type": "response.custom_tool_call_input.delta", "item_id": item["id"], "output_index": index,
                 "delta": delta}] if delta else []

    def _close_call(self, index: int, status: str = "completed") -> list[Event]:
        item = self.items[index]
        item["status"] = status
        decoder = self._inputs.get(index)
        if decoder is None:
            done = {"type": "response.function_call_arguments.done", "item_id": item["id"], "output_index": index,
                    "name": item["name"], "arguments": item["arguments"]}
        else:
            item["input"] = decoder.whole()
            done = {"type": "response.custom_tool_call_input.done", "item_id": item["id"], "output_index": index,
                    "input": item["input"]}
        return [done, {"type": "response.output_item.done", "output_index": index, "item": dict(item)}]

    def finish(self, filtered_text: str | None = None) -> list[Event]:
        """Events closing every open item; ``filtered_text`` replaces held-back text."""
        events: list[Event] = []
        if self.buffer_text and filtered_text:
            events += self.text(filtered_text)
        if not self.items:  # nothing written: an empty message, as an answer always has one item
            events += self._open_message()
        # Cut short by max_output_tokens, the item being written when the budget ran out is
        # 'incomplete' (a client must not run a call whose arguments were cut off); items the
        # model had finished before it are complete.
        last = len(self.items) - 1 if self.finish_reason == "length" else -1
        events += self._close_message("incomplete" if self._message == last else "completed")
        for index in self._calls.values():
            events += self._close_call(index, "incomplete" if index == last else "completed")
        return events


class InputText:
    """The text of a custom call's arguments, ``{"input": "<JSON string>"}``, as they arrive:
    each fragment's decoded text, an escape cut in two held back until its end comes.

    It never raises, whatever an unconstrained model writes (a custom tool without a ``format``
    is generated under its arguments schema, which allows any escape JSON has): an escape JSON
    does not have (``\\q``, ``\\uZZZZ``) is kept as written, a lone surrogate (``\\ud83d`` with
    no low half after it) becomes U+FFFD, and arguments that are not ``{"input": "<string>"}``
    at all (``{"input": 5}``, text) give their own text, as written, as the input."""

    _START = re.compile(r'\{\s*"input"\s*:\s*"')

    def __init__(self) -> None:
        self.raw = ""
        self.at: int | None = None  # where the string's undecoded text begins
        self.text = ""
        self.closed = False

    def feed(self, fragment: str) -> str:
        self.raw += fragment
        if self.at is None:
            start = self._START.match(self.raw)
            if start is None:
                return ""
            self.at = start.end()
        decoded = []
        raw, at = self.raw, self.at
        while at < len(raw) and not self.closed:
            char = raw[at]
            if char == '"':
                self.closed = True
                at += 1
            elif char != "\\":
                decoded.append(char)
                at += 1
            else:
                escape = _escape(raw, at)
                if escape is None:  # cut in two: wait for its end
                    break
                decoded.append(escape[0])
                at = escape[1]
        self.at = at
        text = "".join(decoded)
        self.text += text
        return text

    def whole(self) -> str:
        """The input: the decoded string (up to an escape cut short, as at ``max_output_tokens``),
        or the arguments as written when they never opened ``{"input": "``."""
        return self.raw if self.at is None else self.text


_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX = re.compile(r"[0-9a-fA-F]{0,4}")
_LOW_HALF = re.compile(r"\\u[dD][c-fC-F][0-9a-fA-F]{2}")


def _escape(raw: str, at: int) -> tuple[str, int] | None:
    """The text of the escape at ``raw[at]`` and where it ends, or None when ``raw`` ends before it
    does (see :class:`InputText` for the escapes JSON does not have)."""
    kind = raw[at + 1:at + 2]
    if kind != "u":
        return (_SIMPLE_ESCAPES.get(kind, raw[at:at + 2]), at + 2) if kind else None
    digits = _HEX.match(raw, at + 2).group()  # type: ignore[union-attr]  # {0,4} always matches
    if len(digits) < 4:
        return None if at + 2 + len(digits) == len(raw) else (raw[at:at + 2], at + 2)
    code = int(digits, 16)
    if 0xD800 <= code < 0xDC00:  # a high surrogate: with its low half after it, one character
        after = raw[at + 6:at + 12]
        if _LOW_HALF.fullmatch(after):
            return chr(0x10000 + (code - 0xD800) * 0x400 + int(after[2:], 16) - 0xDC00), at + 12
        if len(after) < 6 and _could_begin_low_half(after):
            return None
    return ("\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)), at + 6


def _could_begin_low_half(text: str) -> bool:
    return _LOW_HALF.fullmatch(text + "\\udc00"[len(text):]) is not None


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "content": [dict(part) for part in item.get("content", ())]}
