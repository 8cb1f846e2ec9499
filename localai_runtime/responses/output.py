"""Output items built from a generation's pieces, with the stream events that announce them.

:class:`OutputBuilder` turns pieces (text, tool-call deltas, the finish reason) into the
response's ``output``: a ``message`` item with one ``output_text`` part for text, one
``function_call`` item per call, in the order the model wrote them. Each step returns the
events a stream sends for it (without ``sequence_number``, which :mod:`.events` adds), so the
ids and indices in the stream, the final object and storage are the same by construction.
"""

from __future__ import annotations

from typing import Any

from localai_runtime.backends import Piece
from localai_runtime.responses.items import new_id

Event = dict[str, Any]


class OutputBuilder:
    def __init__(self, buffer_text: bool = False) -> None:
        self.items: list[dict[str, Any]] = []
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
                index = self._calls[delta.index]
                self.items[index]["arguments"] += delta.arguments
                events.append({"type": "response.function_call_arguments.delta", "item_id": self.items[index]["id"],
                               "output_index": index, "delta": delta.arguments})
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

    def _close_message(self) -> list[Event]:
        if self._message is None:
            return []
        index, self._message = self._message, None
        item = self.items[index]
        item["status"] = "completed"
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
        item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "call_id": new_id("call"),
                "name": name, "arguments": ""}
        self.items.append(item)
        return [{"type": "response.output_item.added", "output_index": index, "item": dict(item)}]

    def finish(self, filtered_text: str | None = None) -> list[Event]:
        """Events closing every open item; ``filtered_text`` replaces held-back text."""
        events: list[Event] = []
        if self.buffer_text and filtered_text:
            events += self.text(filtered_text)
        if not self.items:  # nothing written: an empty message, as an answer always has one item
            events += self._open_message()
        events += self._close_message()
        for index in self._calls.values():
            item = self.items[index]
            item["status"] = "completed"
            events.append({"type": "response.function_call_arguments.done", "item_id": item["id"],
                           "output_index": index, "name": item["name"], "arguments": item["arguments"]})
            events.append({"type": "response.output_item.done", "output_index": index, "item": dict(item)})
        return events


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "content": [dict(part) for part in item.get("content", ())]}
