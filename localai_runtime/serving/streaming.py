"""Server-sent event streams, framed the same way for every API.

:func:`respond` awaits a stream's first event while watching for the client to leave (until
then an error is a plain HTTP error and a client that leaves cancels the work), then answers
with a ``text/event-stream`` response that sends it and the rest. An API whose stream has begun
with nothing to send yet yields ``b""`` as its first event. After the first event an error
becomes the stream's last event(s), counted in /metrics and logged: each API says what they look like
(``failed``) and what ends the stream (``done``: ``[DONE]`` for chat and completions).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.responses import StreamingResponse

from localai_runtime.errors import APIError, internal_error, log_error, stream_error_event
from localai_runtime.serving.generation import until_disconnected
from localai_runtime.serving.runtime import Runtime, current_request

DONE = b"data: [DONE]\n\n"

Failed = Callable[[APIError], Awaitable[bytes]]
"""The events that end a stream which failed after it began, for the error given."""


def sse(payload: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"


def api_error(exc: Exception) -> APIError:
    return exc if isinstance(exc, APIError) else internal_error(exc)


def error_event(runtime: Runtime, exc: Exception) -> bytes:
    """The event for an error after a stream began, counted in /metrics and logged (the upstream
    relay's, for an error the engine reports inside its stream)."""
    error = api_error(exc)
    report_late(runtime, error)
    return stream_error_event(error)


def report_late(runtime: Runtime, error: APIError) -> None:
    """Count and log an error that ends a stream which had begun, as the error handler does the
    others (it never sees these)."""
    runtime.count_error(error)
    operation, key = current_request()
    log_error(error, operation or "a stream", key=key, late=True)


async def _error_event(error: APIError) -> bytes:
    return stream_error_event(error)


async def respond(
    runtime: Runtime, events: AsyncGenerator[bytes, None], receive: Callable[[], Any], stop: threading.Event,
    headers: Callable[[], Mapping[str, str]], *, failed: Failed = _error_event, done: bytes = DONE,
    unbuffered: bool = False,
) -> StreamingResponse:
    """The streaming response sending ``events``; ``headers`` are read once the first event is
    there (a Responses turn knows then what it dropped to fit); ``unbuffered`` asks proxies not
    to buffer the stream."""
    body = _guarded(runtime, events, failed, done)
    first = await until_disconnected(anext(body), receive, stop)
    extra = {"Cache-Control": "no-cache", **({"X-Accel-Buffering": "no"} if unbuffered else {})}
    return StreamingResponse(_prepend(first, body), media_type="text/event-stream", headers={**headers(), **extra})


async def _guarded(runtime: Runtime, events: AsyncGenerator[bytes, None], failed: Failed,
                   done: bytes) -> AsyncGenerator[bytes, None]:
    started = False
    try:
        async for event in events:
            started = True
            yield event
    except Exception as exc:  # noqa: BLE001 - after the stream started, errors become events
        if not started:
            raise
        error = api_error(exc)
        report_late(runtime, error)
        yield await failed(error)
    finally:
        await events.aclose()
    if done:
        yield done


async def _prepend(first: bytes, rest: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """``first``, then ``rest``, which is closed with this (so it gives its work back at once
    when the response ends early, not when the garbage collector finds it)."""
    try:
        yield first
        async for item in rest:
            yield item
    finally:
        await rest.aclose()
