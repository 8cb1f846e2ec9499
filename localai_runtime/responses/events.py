"""Server-sent events of a streamed response: ``event:`` and ``data:`` lines, numbered in order."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

_DELTAS = frozenset({"response.output_text.delta", "response.function_call_arguments.delta",
                     "response.custom_tool_call_input.delta"})
OBFUSCATION_BLOCK = 32
"""Delta events are padded (``obfuscation``) to a multiple of this many characters."""


class EventStream:
    """Frames events, giving each the next ``sequence_number`` (from 0, strictly increasing).

    With ``obfuscate`` (``stream_options.include_obfuscation``, true unless the client says
    false), each delta event carries an ``obfuscation`` field of random characters that pads
    its delta to a multiple of :data:`OBFUSCATION_BLOCK`, so the size of an event on the wire
    does not tell the size of the text in it."""

    def __init__(self, obfuscate: bool = True) -> None:
        self.sequence = 0
        self.obfuscate = obfuscate

    def frame(self, event: Mapping[str, Any]) -> bytes:
        payload = {**event, "sequence_number": self.sequence}
        if self.obfuscate and payload["type"] in _DELTAS:
            padding = OBFUSCATION_BLOCK - len(payload["delta"]) % OBFUSCATION_BLOCK
            payload["obfuscation"] = secrets.token_urlsafe(padding)[:padding]
        self.sequence += 1
        data = json.dumps(payload, ensure_ascii=False)
        return f"event: {payload['type']}\ndata: {data}\n\n".encode()

    def response(self, kind: str, response: Mapping[str, Any]) -> bytes:
        return self.frame({"type": f"response.{kind}", "response": response})

    def error(self, code: str | None, message: str, param: str | None) -> bytes:
        return self.frame({"type": "error", "code": code, "message": message, "param": param})
