"""One createResponse request, admitted: its context (chain or conversation, then its input),
its chat request, and the generation that serves it.

:func:`open_turn` runs the policy, checks what the store must do, reads the history and builds
the chat request; every mistake is an error before any wait. :func:`generate` yields the
backend's pieces and, with ``truncation: auto``, drops the oldest items until the prompt fits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from localai_runtime.backends import Piece
from localai_runtime.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
    UnsupportedParameterError,
)
from localai_runtime.responses.items import check_calls, check_new_ids, input_items, new_id, to_messages
from localai_runtime.responses.request import chat_request, without_no_ops
from localai_runtime.serving.fields import RESPONSES
from localai_runtime.serving.generation import run_pieces
from localai_runtime.serving.policy import Prepared, prepare
from localai_runtime.serving.runtime import Runtime
from localai_runtime.store import MissingResponse, StoreError

logger = logging.getLogger(__name__)

TRUNCATED_HEADER = "x-localai-truncated-input-items"


@dataclass
class Turn:
    prepared: Prepared
    response_id: str
    created_at: float
    input: list[dict[str, Any]]
    history: list[dict[str, Any]]
    stored: bool
    conversation_id: str | None
    chat: dict[str, Any]
    truncated: int = 0
    """Items of the context dropped to fit (``truncation: auto``)."""
    stop: threading.Event = field(default_factory=threading.Event)
    observer: Any = None
    """The request's metrics observer (``Runtime.observe``)."""

    @property
    def request(self) -> dict[str, Any]:
        return self.prepared.request

    def headers(self) -> dict[str, str]:
        headers = self.prepared.headers()
        if self.truncated:
            headers[TRUNCATED_HEADER] = str(self.truncated)
        return headers


def store_unavailable(exc: StoreError) -> ServiceUnavailableError:
    """The client's error for a store failure; the details (paths, database errors) go to the log."""
    logger.error("%s", exc)
    return ServiceUnavailableError("The response store is unavailable; the server's log says why.")


def _conversation_id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, Mapping) else value


async def open_turn(runtime: Runtime, body: Mapping[str, Any]) -> Turn:
    body = without_no_ops(body)
    registration = runtime.lookup(RESPONSES, body.get("model"))
    prepared = prepare(RESPONSES, body, registration, runtime.schemas)
    request = prepared.request
    previous = request.get("previous_response_id")
    conversation = _conversation_id(request.get("conversation"))
    if previous and conversation:
        raise InvalidRequestError("give either 'previous_response_id' or 'conversation', not both",
                                  param="conversation")
    stored = _stored(runtime, body, request, previous, conversation)
    if request.get("background") and request.get("stream"):
        raise UnsupportedParameterError("background responses are not streamed here; poll GET "
                                        "/v1/responses/{id} instead", param="stream")
    history = await _history(runtime, previous, conversation)
    new = input_items(request.get("input"))
    if not new and not history:
        raise InvalidRequestError("'input' is required (and must not be empty) without a previous response or "
                                  "a conversation to continue", param="input")
    check_calls(history, new)
    if conversation:
        check_new_ids(history, new, "input")
    chat = chat_request(request, to_messages(request.get("instructions"), history + new))
    return Turn(prepared, new_id("resp"), time.time(), new, history, stored, conversation, chat,
                observer=runtime.observe(registration.model))


def _stored(runtime: Runtime, body: Mapping[str, Any], request: Mapping[str, Any], previous: str | None,
            conversation: str | None) -> bool:
    if runtime.store is None:
        for name, given in (("store", body.get("store") is True), ("previous_response_id", previous),
                            ("conversation", conversation), ("background", request.get("background"))):
            if given:
                raise InvalidRequestError(f"'{name}' needs the response store, which is off on this server "
                                          "(started with --no-store)", param=name)
        return False
    stored = request.get("store") is not False
    if not stored and request.get("background"):
        raise InvalidRequestError("background responses must be stored; leave 'store' true", param="store")
    if not stored and conversation:
        raise InvalidRequestError("a response added to a conversation is stored; leave 'store' true", param="store")
    return stored


async def _history(runtime: Runtime, previous: str | None, conversation: str | None) -> list[dict[str, Any]]:
    store = runtime.store
    if store is None or not (previous or conversation):
        return []
    try:
        if conversation:
            items = await store.all_items(conversation)
            if items is None:
                raise NotFoundError(f"Conversation with id '{conversation}' not found.", param="conversation")
            return items
        history = []
        for record in await store.chain(previous):
            history += record.input_items + [item for item in record.response.get("output", ())]
        return history
    except MissingResponse as exc:
        raise NotFoundError(f"Previous response with id '{exc.response_id}' not found.",
                            param="previous_response_id") from exc
    except StoreError as exc:
        raise store_unavailable(exc) from exc


async def generate(runtime: Runtime, turn: Turn) -> AsyncIterator[Piece]:
    """The pieces of the turn's generation, on a leased instance of its model."""
    registration = turn.prepared.registration
    items = turn.history + turn.input
    async with runtime.pool(registration).acquire() as lease:
        turn.observer.admitted()
        while True:
            pieces = run_pieces(lease.instance.chat, turn.chat, stop=turn.stop, counter=runtime.generations,
                                executor=runtime.executor, lease=lease, observer=turn.observer)
            try:
                first = await anext(pieces)
            except StopAsyncIteration:
                return
            except ContextLengthExceededError as exc:
                if turn.request.get("truncation") != "auto" or len(items) <= 1:
                    raise ContextLengthExceededError(exc.message.replace("messages", "input"), param="input") from exc
                items = _drop_oldest(items)
                turn.truncated = len(turn.history) + len(turn.input) - len(items)
                turn.chat = {**turn.chat, "messages": to_messages(turn.request.get("instructions"), items)}
                turn.stop.clear()
                continue
            yield first
            async for piece in pieces:
                yield piece
            return


def _drop_oldest(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` without the oldest, and without outputs of calls no longer in it."""
    rest = items[1:]
    called = {item.get("call_id") for item in rest if item["type"] == "function_call"}
    while len(rest) > 1 and rest[0]["type"] == "function_call_output" and rest[0]["call_id"] not in called:
        rest = rest[1:]
    return rest
