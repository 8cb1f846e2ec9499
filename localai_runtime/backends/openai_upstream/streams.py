"""Server-sent events from the upstream, and chat completion chunks as :class:`Piece` objects.

:func:`sse_data` reads one event's data from a line iterator (an ``error`` event, or an
``error:`` field as some llama-server builds send, comes back as an ``{"error": ...}`` object).
:func:`chat_pieces` turns a chat completion stream into the pieces the Responses API builds its
output from, so a registration on this backend serves createResponse through the same path as
a local model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from localai_runtime.backends.abstract import Piece
from localai_runtime.backends.openai_upstream.failures import error_in
from localai_runtime.tools.parsing import CallDelta

DONE = "[DONE]"


async def sse_data(lines: AsyncIterator[str]) -> str | None:
    """The data of the next event (its ``data:`` lines joined), or None at the stream's end."""
    data: list[str] = []
    kind = ""
    async for line in lines:
        if not line:
            if data:
                break
            kind = ""
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            kind = value
        elif field == "error":  # llama-server's mid-stream error field
            kind = "error"
            data.append(value)
        # comments (": ping"), id: and retry: carry nothing to relay
    if not data:
        return None
    text = "\n".join(data)
    if kind == "error" and not text.lstrip().startswith('{"error"'):
        try:
            detail: Any = json.loads(text)
        except ValueError:
            detail = {"message": text}
        return json.dumps({"error": detail})
    return text


async def chat_pieces(chunks: AsyncIterator[dict[str, Any]], url: str) -> AsyncIterator[Piece]:
    """A chat stream's chunks as pieces: text, tool-call deltas and logprobs as they come; each
    choice's finish with the usage the stream ends with (the request asks for it)."""
    finished: dict[int, str] = {}
    usage: dict[str, Any] = {}
    async for chunk in chunks:
        if (error := error_in(chunk, url)) is not None:
            raise error
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index") or 0)
            delta = choice.get("delta") or {}
            logprobs = (choice.get("logprobs") or {}).get("content")
            calls = [CallDelta(int(call.get("index") or 0), (call.get("function") or {}).get("name"),
                               (call.get("function") or {}).get("arguments") or "")
                     for call in delta.get("tool_calls") or ()]
            if delta.get("content") or calls or logprobs:
                yield Piece(text=delta.get("content") or "", index=index, logprobs=logprobs,
                            tool_calls=calls or None)
            if choice.get("finish_reason"):
                finished[index] = choice["finish_reason"]
    for position, (index, reason) in enumerate(sorted(finished.items())):
        first = position == 0
        yield Piece(index=index, finish_reason=reason,
                    prompt_tokens=int(usage.get("prompt_tokens") or 0) if first else 0,
                    completion_tokens=int(usage.get("completion_tokens") or 0) if first else 0)
