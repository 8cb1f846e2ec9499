"""Requests for an ``openai-upstream`` registration, relayed to the upstream engine on the event loop.

The request has been validated, merged and policed as for any backend; it goes upstream with
the upstream's model name, each listed extension as a top-level field (as vLLM and llama.cpp's
server take them) and no metadata fields, and comes back with the registration's model name.
A stream passes through event by event as it arrives (``X-Accel-Buffering: no`` asks proxies
not to buffer it); the pool still admits requests (``parallel`` in flight, then the queue, then
429). A client that leaves closes the upstream connection, which cancels the upstream request.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from starlette.responses import JSONResponse, Response

from localai_runtime.backends import Piece
from localai_runtime.backends.openai_upstream.failures import UpstreamError, error_in, is_context_overflow
from localai_runtime.backends.openai_upstream.streams import chat_pieces
from localai_runtime.errors import ContextLengthExceededError, UnsupportedParameterError
from localai_runtime.serving import streaming
from localai_runtime.serving.fields import EXTENSIONS, METADATA_FIELDS, OUTPUT_FILTERS
from localai_runtime.serving.generation import Observer, until_disconnected
from localai_runtime.serving.leases import Lease
from localai_runtime.serving.policy import Prepared
from localai_runtime.serving.registrations import Registration
from localai_runtime.serving.runtime import Runtime
from localai_runtime.serving.vectors import encode

if TYPE_CHECKING:
    from localai_runtime.backends.openai_upstream.backend import UpstreamInstance
    from localai_runtime.backends.openai_upstream.client import Upstream

PATHS = {"createChatCompletion": "/chat/completions", "createCompletion": "/completions",
         "createEmbedding": "/embeddings"}

def upstream_body(request: Mapping[str, Any], registration: Registration, *, stream: bool) -> dict[str, Any]:
    body = {key: value for key, value in request.items() if key != EXTENSIONS and key not in METADATA_FIELDS}
    extensions = request.get(EXTENSIONS) or {}
    body.update({key: value for key, value in extensions.items() if key not in OUTPUT_FILTERS})
    body["model"] = registration.settings.get("upstream_model")
    if stream:  # usage is counted for /metrics; the client sees it only if it asked
        body["stream"] = True
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return body


async def relay(runtime: Runtime, operation_id: str, prepared: Prepared, receive: Callable[[], Any]) -> Response:
    if prepared.filters.active:
        name = next(key for key in OUTPUT_FILTERS if (prepared.request.get(EXTENSIONS) or {}).get(key))
        raise UnsupportedParameterError(
            f"'{EXTENSIONS}.{name}' is not supported for model '{prepared.registration.model}': its answers pass "
            "through from the upstream unchanged", param=f"{EXTENSIONS}.{name}")
    stop = threading.Event()
    path = PATHS[operation_id]
    if prepared.request.get("stream"):
        return await streaming.respond(runtime, _stream(runtime, prepared, path), receive, stop, prepared.headers,
                                       unbuffered=True)
    return await until_disconnected(_whole(runtime, prepared, path), receive, stop)


async def _whole(runtime: Runtime, prepared: Prepared, path: str) -> Response:
    registration = prepared.registration
    body = upstream_body(prepared.request, registration, stream=False)
    encoding = body.pop("encoding_format", None) if path == PATHS["createEmbedding"] else None
    observer = runtime.observe(registration.model)
    async with runtime.pool(registration).acquire() as lease:
        observer.admitted()
        opened = await _upstream(lease).open(path, body)
        async with opened.reading():
            answer = await opened.json()
    if isinstance(answer, dict):
        answer["model"] = registration.model
        if encoding == "base64":
            for entry in answer.get("data") or ():
                entry["embedding"] = encode(entry.get("embedding"), encoding)
        _finished(observer, answer)
    return JSONResponse(answer, headers=prepared.headers())


def _finished(observer: Observer, answer: Mapping[str, Any]) -> None:
    usage = answer.get("usage") or {}
    choices = answer.get("choices") or [{}]
    observer.finished(str(choices[0].get("finish_reason") or "stop"), int(usage.get("prompt_tokens") or 0),
                      int(usage.get("completion_tokens") or 0))


async def _stream(runtime: Runtime, prepared: Prepared, path: str) -> AsyncGenerator[bytes, None]:
    registration = prepared.registration
    wants_usage = bool((prepared.request.get("stream_options") or {}).get("include_usage"))
    body = upstream_body(prepared.request, registration, stream=True)
    observer = runtime.observe(registration.model)
    last: dict[str, Any] = {}
    async with runtime.pool(registration).acquire() as lease:
        observer.admitted()
        opened = await _upstream(lease).open(path, body)
        async with opened.reading():
            async for chunk in opened.chunks():
                if (error := error_in(chunk, opened.url)) is not None:
                    opened.count_as("stream_error")
                    yield streaming.error_event(runtime, error)
                    continue
                if chunk.get("usage"):
                    last["usage"] = chunk["usage"]
                    if not chunk.get("choices") and not wants_usage:
                        continue
                for choice in chunk.get("choices") or ():
                    if choice.get("finish_reason"):
                        last.setdefault("choices", [choice])
                if chunk.get("choices"):
                    observer.piece()
                if "model" in chunk:
                    chunk["model"] = registration.model
                yield streaming.sse(chunk)
    _finished(observer, last)


def _upstream(lease: Lease) -> Upstream:
    """The client of an openai-upstream registration's instance (only those relay)."""
    return cast("UpstreamInstance", lease.instance).upstream


async def remote_pieces(lease: Lease, registration: Registration, chat: Mapping[str, Any],
                        stop: threading.Event, observer: Observer) -> AsyncGenerator[Piece, None]:
    """A chat request's pieces from the upstream (the Responses API's path for this backend)."""
    body = upstream_body(chat, registration, stream=True)
    try:
        opened = await _upstream(lease).open(PATHS["createChatCompletion"], body)
    except UpstreamError as exc:
        if is_context_overflow(exc):  # so that truncation: auto can drop items
            raise ContextLengthExceededError(exc.message, param="messages") from exc
        raise
    async with opened.reading():
        async for piece in chat_pieces(opened.chunks(), opened.url):
            if piece.text or piece.tool_calls:
                observer.piece()
            yield piece
            if stop.is_set():
                opened.count_as("cancelled")
                return
