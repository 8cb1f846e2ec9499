"""Anthropic's Messages operations, answered whole or streamed, and their token counts.

:class:`MessagesServing` serves ``messages_post`` and ``beta_messages_post`` as the other APIs
are served (:class:`~localai_runtime.serving.base.Serving`): the policy weighs the Messages
request, :mod:`.request` turns it into the chat request, and the pieces of its generation (by
a local instance or relayed to an upstream engine) become content blocks (:mod:`.content`).
A stream sends Anthropic's events: ``message_start``, ``ping``, per block
``content_block_start``, its deltas and ``content_block_stop``, then ``message_delta`` (the
stop reason and the usage) and ``message_stop``; an error after it began is its ``error``
event. :class:`CountTokensServing` counts the prompt the same message would have.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import threading
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from localai_runtime.backends import Piece
from localai_runtime.errors import APIError, NotImplementedAPIError, anthropic_body
from localai_runtime.messages.content import ContentBuilder, message, new_id, usage
from localai_runtime.messages.request import chat_request, without_hints, without_no_ops
from localai_runtime.serving import streaming
from localai_runtime.serving.base import Serving
from localai_runtime.serving.generation import run_pieces, start_work, until_disconnected
from localai_runtime.serving.leases import Lease
from localai_runtime.serving.policy import Prepared, prepare
from localai_runtime.serving.registrations import Registration
from localai_runtime.serving.runtime import Runtime
from localai_runtime.serving.upstream import remote_pieces
from localai_runtime.tools.grammar_limits import GrammarLimits


@dataclasses.dataclass
class PreparedMessage(Prepared):
    """A Messages request admitted, with the chat request that serves it."""

    chat: dict[str, Any] = dataclasses.field(default_factory=dict)


def _prepared(operation_id: str, body: Mapping[str, Any], registration: Registration,
              runtime: Runtime) -> PreparedMessage:
    request, hinted = without_hints(body)
    prepared = prepare(operation_id, request, registration, runtime.schemas)
    loosen = None
    if registration.unsupported_policy == "drop":
        loosen = GrammarLimits.from_settings(registration.settings.get("grammar_limits"))
    chat, tools, billing = chat_request(prepared.request, loosen)  # a mistake is a 400 before any wait
    fields = {field.name: getattr(prepared, field.name) for field in dataclasses.fields(Prepared)}
    fields["dropped"] = [*hinted, *billing, *prepared.dropped]
    return PreparedMessage(**{**fields, "tools": tools}, chat=chat)


def frame(event: Mapping[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


Source = Callable[[Lease], AsyncGenerator[Piece, None]]


class MessagesServing(Serving):
    validated = False  # the policy validates the request as it weighs it (without its no-ops)

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id

    def normalise(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return without_no_ops(body)

    def prepare(self, runtime: Runtime, body: Mapping[str, Any], registration: Registration) -> Prepared:
        return _prepared(self.operation_id, body, registration, runtime)

    async def answer(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                     receive: Callable[[], Any]) -> Response:
        assert isinstance(prepared, PreparedMessage)
        return await _respond(runtime, prepared, _local, receive)

    async def relay(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                    receive: Callable[[], Any]) -> Response:
        assert isinstance(prepared, PreparedMessage)
        return await _respond(runtime, prepared, _relayed, receive)


def _local(runtime: Runtime, prepared: PreparedMessage, stop: threading.Event, observer: Any) -> Source:
    """The generation of the chat request by a leased local instance."""

    def source(lease: Lease) -> AsyncGenerator[Piece, None]:
        chat = functools.partial(lease.instance.chat, tools=prepared.tools, response_format=prepared.response_format)
        return run_pieces(chat, prepared.chat, stop=stop, counter=runtime.generations, executor=runtime.executor,
                          lease=lease, observer=observer)

    return source


def _relayed(runtime: Runtime, prepared: PreparedMessage, stop: threading.Event, observer: Any) -> Source:
    """The chat request relayed to the registration's upstream engine."""
    return lambda lease: remote_pieces(lease, prepared.registration, prepared.chat, stop, observer)


async def _respond(runtime: Runtime, prepared: PreparedMessage, sourcing: Callable[..., Source],
                   receive: Callable[[], Any]) -> Response:
    stop = threading.Event()
    observer = runtime.observe(prepared.registration.model)
    source = sourcing(runtime, prepared, stop, observer)
    builder = ContentBuilder(prepared.filters.active, prepared.request.get("stop_sequences") or ())
    message_id = new_id("msg")
    if prepared.request.get("stream"):
        return await streaming.respond(runtime, _events(runtime, prepared, source, builder, message_id, observer),
                                       receive, stop, prepared.headers, failed=_failed, done=b"", unbuffered=True)
    final = await until_disconnected(_whole(runtime, prepared, source, builder, message_id, observer), receive, stop)
    return JSONResponse(final, headers=prepared.headers())


async def _pieces(runtime: Runtime, prepared: PreparedMessage, source: Source,
                  observer: Any) -> AsyncGenerator[Piece, None]:
    async with runtime.pool(prepared.registration).acquire() as lease:
        observer.admitted()
        pieces = source(lease)
        try:
            async for piece in pieces:
                yield piece
        finally:
            await pieces.aclose()


async def _finish(prepared: PreparedMessage, builder: ContentBuilder, observer: Any) -> list[dict[str, Any]]:
    filtered = await asyncio.to_thread(prepared.filters.apply, builder.held_text) if builder.buffer_text else None
    events = builder.finish(filtered)
    observer.finished(builder.finish_reason or "stop", builder.prompt_tokens, builder.completion_tokens)
    return events


async def _whole(runtime: Runtime, prepared: PreparedMessage, source: Source, builder: ContentBuilder,
                 message_id: str, observer: Any) -> dict[str, Any]:
    async for piece in _pieces(runtime, prepared, source, observer):
        builder.add(piece)
    await _finish(prepared, builder, observer)
    return message(message_id, prepared.registration.model, builder.blocks, builder.reason, builder.stop_sequence,
                   builder.usage())


async def _events(runtime: Runtime, prepared: PreparedMessage, source: Source, builder: ContentBuilder,
                  message_id: str, observer: Any) -> AsyncGenerator[bytes, None]:
    started = False
    async for piece in _pieces(runtime, prepared, source, observer):
        if not started:
            started = True
            opening = message(message_id, prepared.registration.model, [], None, None, usage())
            yield frame({"type": "message_start", "message": opening}) + frame({"type": "ping"})
        yield b"".join(frame(event) for event in builder.add(piece))
    closing = await _finish(prepared, builder, observer)
    tokens = builder.usage()
    delta = {"type": "message_delta", "context_management": None, "usage": {
        key: tokens[key] for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                                     "cache_read_input_tokens", "iterations", "output_tokens_details",
                                     "server_tool_use")},
        "delta": {"stop_reason": builder.reason, "stop_sequence": builder.stop_sequence, "stop_details": None,
                  "container": None}}
    yield b"".join(frame(event) for event in [*closing, delta, {"type": "message_stop"}])


async def _failed(error: APIError) -> bytes:
    return frame(anthropic_body(error))


class CountTokensServing(Serving):
    """The prompt tokens of the message the same request would create, counted by the model its
    Messages operation registers (``messages_operation``), rendered exactly as it would be."""

    validated = False

    def __init__(self, operation_id: str, messages_operation: str) -> None:
        self.operation_id = operation_id
        self.messages_operation = messages_operation

    async def serve(self, runtime: Runtime, body: Mapping[str, Any], receive: Callable[[], Any]) -> Response:
        body = without_no_ops(body)
        registration = runtime.lookup(self.messages_operation, body.get("model"))
        prepared = _prepared(self.messages_operation, {**body, "max_tokens": 1}, registration, runtime)
        if registration.remote:
            raise NotImplementedAPIError(f"counting tokens needs the model's vocabulary; the model "
                                         f"'{registration.model}' is relayed to an upstream engine")
        request = {"model": prepared.chat["model"], "messages": prepared.chat["messages"]}

        async def count() -> int:
            async with runtime.pool(registration).acquire() as lease:
                work = functools.partial(lease.instance.tokenize_request, request, prepared.tools)
                tokens, _ = await start_work(asyncio.get_running_loop(), runtime.executor, work, None, lease)
                return len(tokens)

        counted = await until_disconnected(count(), receive, threading.Event())
        headers = {key: value for key, value in prepared.headers().items()}
        return JSONResponse({"input_tokens": counted, "context_management": None}, headers=headers)
