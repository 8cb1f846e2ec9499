"""One createResponse request, admitted: its context (chain or conversation, then its input),
its chat request, and the generation that serves it.

:func:`open_turn` checks what the store must do, reads the history and builds the chat request
of a request the policy admitted; every mistake is an error before any wait. :func:`generate`
yields the pieces of the turn's source (:func:`local_pieces` or :func:`relayed_pieces`) and,
with ``truncation: auto``, drops the oldest items until the prompt fits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from localai_runtime.backends import Piece
from localai_runtime.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
    UnsupportedParameterError,
)
from localai_runtime.responses.items import CALLS, OUTPUTS, check_calls, check_new_ids, input_items, new_id, to_messages
from localai_runtime.responses.request import chat_request
from localai_runtime.responses.tools import CallTarget, call_targets
from localai_runtime.serving.generation import run_pieces
from localai_runtime.serving.leases import Lease, Reservation
from localai_runtime.serving.policy import Prepared
from localai_runtime.serving.runtime import Runtime
from localai_runtime.serving.upstream import remote_pieces
from localai_runtime.store import MissingResponse, StoreError

if TYPE_CHECKING:
    from localai_runtime.store import Store

logger = logging.getLogger(__name__)
T = TypeVar("T")

TRUNCATED_HEADER = "x-localai-truncated-input-items"

Pieces = Callable[[Runtime, Lease, "Turn"], AsyncGenerator[Piece, None]]
"""A turn's generation on a leased instance."""


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
    pieces: Pieces
    """Where the generation runs: :func:`local_pieces` or :func:`relayed_pieces`."""
    truncated: int = 0
    """Items of the context dropped to fit (``truncation: auto``)."""
    stop: threading.Event = field(default_factory=threading.Event)
    observer: Any = None
    """The request's metrics observer (``Runtime.observe``)."""
    on_admitted: Callable[[], Awaitable[None]] | None = None
    """Called once the generation has a model instance (a background response is then in progress)."""
    finishing: bool = False
    """The final answer is being stored: a cancel or a failure no longer changes it."""
    reservation: Reservation | None = None
    """The queue place a background response took when it was accepted."""
    targets: Mapping[str, CallTarget] = field(default_factory=dict)
    """What answers each tool name the model may call (a function or custom tool call item)."""

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


def require_store(runtime: Runtime, refusal: str) -> Store:
    """The store, or a 400 saying ``refusal`` when the server keeps none."""
    if runtime.store is None:
        raise InvalidRequestError(f"{refusal} (started with --no-store)")
    return runtime.store


async def in_store(work: Awaitable[T]) -> T:
    """The result of a store call; a store failure is the client's 503 (see :func:`store_unavailable`)."""
    try:
        return await work
    except StoreError as exc:
        raise store_unavailable(exc) from exc


def _conversation_id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, Mapping) else value


async def open_turn(runtime: Runtime, body: Mapping[str, Any], prepared: Prepared, pieces: Pieces) -> Turn:
    """The turn of ``prepared`` (``body``: the request as sent, less its no-ops)."""
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
    messages = to_messages(request.get("instructions"), history + new)
    # a custom tool's grammar is translated here: up to about a second for a hostile 100 KB one
    chat, tools, response_format = await asyncio.to_thread(chat_request, request, messages) if request.get("tools") \
        else chat_request(request, messages)
    prepared = replace(prepared, tools=tools, response_format=response_format)
    return Turn(prepared, new_id("resp"), time.time(), new, history, stored, conversation,
                chat, pieces, observer=runtime.observe(prepared.registration.model), targets=call_targets(request))


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
        assert previous is not None  # neither a conversation nor a previous response returned above
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
    async with runtime.pool(registration).acquire(turn.reservation) as lease:
        turn.observer.admitted()
        if turn.on_admitted is not None:
            await turn.on_admitted()
        while True:
            pieces = turn.pieces(runtime, lease, turn)
            try:
                first = await anext(pieces)
            except StopAsyncIteration:
                return
            except ContextLengthExceededError as exc:
                if turn.request.get("truncation") != "auto" or len(_drop_oldest(items)) == len(items):
                    raise ContextLengthExceededError(exc.message.replace("messages", "input"), param="input") from exc
                items = _drop_oldest(items)
                turn.truncated = len(turn.history) + len(turn.input) - len(items)
                turn.chat = {**turn.chat, "messages": to_messages(turn.request.get("instructions"), items)}
                turn.stop.clear()
                continue
            async with contextlib.aclosing(pieces):  # closed before the lease is given back
                yield first
                async for piece in pieces:
                    yield piece
            return


def local_pieces(runtime: Runtime, lease: Lease, turn: Turn) -> AsyncGenerator[Piece, None]:
    """The turn's chat request generated by the leased local instance."""
    chat = functools.partial(lease.instance.chat, tools=turn.prepared.tools,
                             response_format=turn.prepared.response_format)
    return run_pieces(chat, turn.chat, stop=turn.stop, counter=runtime.generations, executor=runtime.executor,
                      lease=lease, observer=turn.observer)


def relayed_pieces(runtime: Runtime, lease: Lease, turn: Turn) -> AsyncGenerator[Piece, None]:
    """The turn's chat request relayed to the registration's upstream engine."""
    return remote_pieces(lease, turn.prepared.registration, turn.chat, turn.stop, turn.observer)


def _drop_oldest(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``items`` without the oldest one that is not a leading system or developer message (the
    instructions of the conversation stay), a call taking its outputs along, and without any
    output whose call is gone."""
    start = 0
    while start < len(items) and items[start]["type"] == "message" and items[start]["role"] in _KEPT_ROLES:
        start += 1
    if start >= len(items) - 1:  # only the instructions and the newest item are left: nothing to drop
        return items
    dropped = items[start]
    rest = items[:start] + items[start + 1:]
    if dropped["type"] in CALLS:
        rest = [item for item in rest if item.get("call_id") != dropped["call_id"]]
    called = {item["call_id"] for item in rest if item["type"] in CALLS}
    return [item for item in rest if item["type"] not in OUTPUTS or item["call_id"] in called]


_KEPT_ROLES = frozenset({"system", "developer"})
