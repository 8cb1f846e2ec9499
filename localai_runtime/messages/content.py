"""A message's content blocks built from a generation's pieces, with the stream events that
announce them.

:class:`ContentBuilder` turns pieces (text, tool-call deltas, the finish) into the message's
``content``: a ``text`` block for each run of text, a ``tool_use`` block per call, in the order
the model wrote them. Each step returns the events a stream sends for it
(``content_block_start``, ``content_block_delta`` with ``text_delta`` or ``input_json_delta``,
``content_block_stop``), so the blocks streamed and the final message are the same by
construction. :func:`message` is the message object, :func:`stop_reason` Anthropic's reason.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from localai_runtime.backends import Piece

Event = dict[str, Any]

_STOP_REASONS = {"length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def stop_reason(finish: str | None, stop_sequence: str | None) -> str:
    if stop_sequence is not None:
        return "stop_sequence"
    return _STOP_REASONS.get(finish or "stop", "end_turn")


def usage(prompt: int = 0, completion: int = 0, cached: int = 0) -> dict[str, Any]:
    """``usage``: the prompt's tokens beyond those reused from an earlier request's prefix are
    ``input_tokens``, the reused ones ``cache_read_input_tokens`` (as Anthropic counts them)."""
    return {"input_tokens": prompt - cached, "output_tokens": completion, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached, "cache_creation": None, "inference_geo": None, "iterations": None,
            "output_tokens_details": None, "server_tool_use": None, "service_tier": "standard", "speed": None}


def message(message_id: str, model: str, content: list[dict[str, Any]], reason: str | None,
            stop_sequence: str | None, tokens: dict[str, Any]) -> dict[str, Any]:
    return {"id": message_id, "type": "message", "role": "assistant", "content": content, "model": model,
            "stop_reason": reason, "stop_sequence": stop_sequence, "stop_details": None, "usage": tokens,
            "container": None, "context_management": None, "diagnostics": None}


class ContentBuilder:
    def __init__(self, buffer_text: bool = False, stop_sequences: Sequence[str] = ()) -> None:
        self.blocks: list[dict[str, Any]] = []
        self.stop_sequences = frozenset(stop_sequences)
        """The request's: a stop string of the model's own turn format ends the turn (``end_turn``)."""
        self.buffer_text = buffer_text
        """Hold text back until the end (output filters need the whole text)."""
        self.held_text = ""
        self._open: int | None = None  # index of the block receiving deltas
        self._calls: dict[int, int] = {}  # the model's call index -> block index
        self._arguments: dict[int, str] = {}  # block index -> its input's JSON text
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None
        self.prompt_tokens = self.completion_tokens = self.cached_tokens = 0

    def add(self, piece: Piece) -> list[Event]:
        events: list[Event] = []
        if piece.text and self.buffer_text:
            self.held_text += piece.text
        elif piece.text:
            events += self.text(piece.text)
        for delta in piece.tool_calls or ():
            if delta.name is not None:
                events += self._close()
                events += self._open_call(delta.index, delta.name)
            if delta.arguments:
                index = self._calls[delta.index]
                self._arguments[index] += delta.arguments
                events.append({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": delta.arguments}})
        if piece.finish_reason is not None:
            self.finish_reason = piece.finish_reason
            self.stop_sequence = piece.stop_sequence if piece.stop_sequence in self.stop_sequences else None
            self.prompt_tokens, self.completion_tokens = piece.prompt_tokens, piece.completion_tokens
            self.cached_tokens = piece.cached_tokens
        return events

    def text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open is None or self.blocks[self._open]["type"] != "text":
            events += self._close()
            self._open = len(self.blocks)
            self.blocks.append({"type": "text", "text": "", "citations": None})
            events.append({"type": "content_block_start", "index": self._open,
                           "content_block": {"type": "text", "text": "", "citations": None}})
        self.blocks[self._open]["text"] += text
        events.append({"type": "content_block_delta", "index": self._open,
                       "delta": {"type": "text_delta", "text": text}})
        return events

    def _open_call(self, call_index: int, name: str) -> list[Event]:
        index = self._open = len(self.blocks)
        self._calls[call_index] = index
        self._arguments[index] = ""
        block = {"type": "tool_use", "id": new_id("toolu"), "name": name, "input": {}, "caller": {"type": "direct"}}
        self.blocks.append(block)
        return [{"type": "content_block_start", "index": index, "content_block": dict(block)}]

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        if index in self._arguments:
            self.blocks[index]["input"] = _input(self._arguments[index])
        return [{"type": "content_block_stop", "index": index}]

    def finish(self, filtered_text: str | None = None) -> list[Event]:
        """Events closing the open block; ``filtered_text`` replaces held-back text."""
        events: list[Event] = []
        if self.buffer_text and filtered_text:
            events += self.text(filtered_text)
        return events + self._close()

    @property
    def reason(self) -> str:
        return stop_reason(self.finish_reason, self.stop_sequence)

    def usage(self) -> dict[str, Any]:
        return usage(self.prompt_tokens, self.completion_tokens, self.cached_tokens)


def _input(arguments: str) -> dict[str, Any]:
    """A ``tool_use`` block's input: the call's arguments, or ``{}`` where they are not a whole JSON
    object (cut off by ``max_tokens``, which ``stop_reason`` then says; or written by an
    unconstrained upstream model). The stream carried the text as written either way."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
