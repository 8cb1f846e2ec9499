"""Server-sent events from the upstream, and chat completion chunks as :class:`Piece` objects.

:func:`sse_data` reads one event's data from a line iterator. :func:`chat_pieces` turns a chat
completion stream into the pieces the Responses API builds its output from, so a registration
on this backend serves createResponse through the same path as a local model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from localai_runtime.backends.abstract import Piece
from localai_runtime.errors import APIError
from localai_runtime.tools.parsing import CallDelta

DONE = "[DONE]"


async def sse_data(lines: AsyncIterator[str]) -> str | None:
    """The data of the next event (its ``data:`` lines joined), or None at the stream's end."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                return "\n".join(data)
            continue
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        # comments (": ping") and other fields (event:, id:, retry:) carry nothing to relay
    return "\n".join(data) if data else None


class UpstreamStreamError(APIError):
    """The upstream's stream reported an error after it began."""


def error_in(chunk: Any) -> UpstreamStreamError | None:
    """An error event of the upstream's stream, as an error."""
    if isinstance(chunk, dict) and isinstance(chunk.get("error"), dict):
        error = chunk["error"]
        return UpstreamStreamError(f"The upstream failed: {error.get('message') or 'no message'}",
                                   code=str(error.get("code") or "upstream_error"))
    return None


async def chat_pieces(events: AsyncIterator[str]) -> AsyncIterator[Piece]:
    """A chat stream's chunks as pieces: text, tool-call deltas and logprobs as they come; each
    choice's finish with the usage the stream ends with (the request asks for it)."""
    finished: dict[int, str] = {}
    usage: dict[str, Any] = {}
    async for data in events:
        if data == DONE:
            break
        chunk = json.loads(data)
        if (error := error_in(chunk)) is not None:
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
