"""createResponse, answered whole, streamed or in the background; and the stored responses.

:class:`ResponsesServing` serves createResponse as the other APIs are served
(:class:`~localai_runtime.serving.base.Serving`): its local and relayed answers differ only in
where the turn's pieces come from.

A response is stored (when its ``store`` is true) before its final object or its
``response.completed`` event leaves, so a GET or a follow-up sent right after sees it; one that
cannot be stored is a 503, or ends its stream with ``response.failed`` saying so, and a background
one's outcome is retried until the store takes it. The ids in the stream, the final object and
storage are the same objects (:mod:`.output`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from localai_runtime.errors import (
    APIError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
    log_error,
)
from localai_runtime.responses.events import EventStream
from localai_runtime.responses.hosted import without_hosted_tools
from localai_runtime.responses.objects import TERMINAL, finished, page, response_object
from localai_runtime.responses.output import Event, OutputBuilder
from localai_runtime.responses.request import without_hints, without_no_ops
from localai_runtime.responses.tool_fields import without_unserved_tool_fields
from localai_runtime.responses.turn import (
    Turn,
    generate,
    in_store,
    local_pieces,
    open_turn,
    relayed_pieces,
    require_store,
    store_unavailable,
)
from localai_runtime.serving import streaming
from localai_runtime.serving.base import Serving
from localai_runtime.serving.fields import CHAT, EXTENSIONS, RESPONSES, honoured
from localai_runtime.serving.generation import until_disconnected
from localai_runtime.serving.policy import Prepared, check_grammars
from localai_runtime.serving.registrations import Registration
from localai_runtime.serving.runtime import Runtime, current_request
from localai_runtime.store import ResponseRecord, StoreError

if TYPE_CHECKING:
    from localai_runtime.store import Store

logger = logging.getLogger(__name__)

STORE_RETRY_FOR_S = 600.0
"""How long a background response's outcome is retried while the store fails."""
STORE_RETRY_MAX_S = 30.0
"""The longest wait between two of those tries."""


class ResponsesServing(Serving):
    operation_id = RESPONSES
    validated = False  # the policy validates the request as it weighs it (without its no-ops)

    def normalise(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        return without_no_ops(body)

    def prepare(self, runtime: Runtime, body: Mapping[str, Any], registration: Registration) -> Prepared:
        request, hinted = without_hints(body)
        request, hosted = without_hosted_tools(request, registration.hosted_policy == "drop")
        request, unserved = without_unserved_tool_fields(request, _enforces_grammars(registration),
                                                         registration.unsupported_policy == "drop")
        prepared = super().prepare(runtime, request, registration)
        prepared.dropped[:0] = hinted + hosted + unserved
        return prepared

    async def answer(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                     receive: Callable[[], Any]) -> Response:
        turn = await open_turn(runtime, body, prepared, local_pieces)
        await check_grammars(turn.prepared)  # before any wait: an over-limit grammar is a 400 at once
        return await _create(runtime, turn, receive)

    async def relay(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                    receive: Callable[[], Any]) -> Response:
        return await _create(runtime, await open_turn(runtime, body, prepared, relayed_pieces), receive)


SERVING = ResponsesServing()


def _enforces_grammars(registration: Registration) -> bool:
    """Whether the registration's backend generates under a custom tool's grammar: it runs here
    (a relayed request's tools reach the other engine without their grammars) and honours GBNF."""
    backend = registration.backend
    return backend is not None and not registration.remote and \
        f"{EXTENSIONS}.grammar" in honoured(backend, CHAT, registration.settings)


async def _create(runtime: Runtime, turn: Turn, receive: Callable[[], Any]) -> Response:
    response = response_object(turn.response_id, turn.created_at, turn.prepared.registration.model, turn.request,
                               stored=turn.stored, conversation_id=turn.conversation_id)
    if turn.request.get("background"):
        return JSONResponse(await _start_background(runtime, turn, response), headers=turn.headers())
    if turn.request.get("stream"):
        return await _stream(runtime, turn, response, receive)
    final = await until_disconnected(_whole(runtime, turn, response), receive, turn.stop)
    return JSONResponse(final, headers=turn.headers())


async def _whole(runtime: Runtime, turn: Turn, response: dict[str, Any]) -> dict[str, Any]:
    builder = OutputBuilder(buffer_text=turn.prepared.filters.active, targets=turn.targets)
    async for piece in generate(runtime, turn):
        builder.add(piece)
    return (await _finish(runtime, turn, response, builder))[1]


async def _finish(runtime: Runtime, turn: Turn, response: dict[str, Any],
                  builder: OutputBuilder) -> tuple[list[Event], dict[str, Any]]:
    """The closing events and the final object, stored."""
    filtered = None
    if builder.buffer_text:
        filtered = await asyncio.to_thread(turn.prepared.filters.apply, builder.held_text)
    events = builder.finish(filtered)
    reason = "max_output_tokens" if builder.finish_reason == "length" else None
    final = finished(response, "incomplete" if reason else "completed", output=builder.items,
                     prompt_tokens=builder.prompt_tokens, completion_tokens=builder.completion_tokens,
                     cached_tokens=builder.cached_tokens, incomplete_reason=reason)
    turn.finishing = True  # from here a cancel no longer changes the outcome: the answer is stored
    try:
        await asyncio.shield(_save(runtime, turn, final))
    except ServiceUnavailableError as exc:  # a stream then ends with response.failed saying so, not completed
        raise ServiceUnavailableError(
            f"Response '{turn.response_id}' was generated but could not be stored, so it is not kept (a GET of it "
            "will not find it): the response store is unavailable; the server's log says why.") from exc
    turn.observer.finished(builder.finish_reason or "stop", builder.prompt_tokens, builder.completion_tokens)
    return events, final


async def _save(runtime: Runtime, turn: Turn, body: dict[str, Any]) -> None:
    if not turn.stored or runtime.store is None:
        return
    record = ResponseRecord(turn.response_id, turn.created_at, body["model"], body["status"], body, turn.input,
                            turn.request.get("previous_response_id"), turn.conversation_id)
    appended = turn.conversation_id and body["status"] in ("completed", "incomplete")
    try:  # with its conversation's new items, in one transaction: both are stored, or neither
        if not await runtime.store.put_response(record, appended=turn.input + body["output"] if appended else None):
            raise NotFoundError(f"Conversation with id '{turn.conversation_id}' not found.", param="conversation")
    except StoreError as exc:
        raise store_unavailable(exc) from exc


async def _stream(runtime: Runtime, turn: Turn, response: dict[str, Any], receive: Callable[[], Any]) -> Response:
    events = EventStream(obfuscate=(turn.request.get("stream_options") or {}).get("include_obfuscation") is not False)
    builder = OutputBuilder(buffer_text=turn.prepared.filters.active, targets=turn.targets)

    async def stream() -> AsyncGenerator[bytes, None]:
        started = False
        async for piece in generate(runtime, turn):
            if not started:
                started = True
                yield events.response("created", response) + events.response("in_progress", response)
            yield b"".join(events.frame(event) for event in builder.add(piece))
        closing, final = await _finish(runtime, turn, response, builder)
        yield b"".join(events.frame(event) for event in closing) + events.response(final["status"], final)

    async def failed(error: APIError) -> bytes:
        failed = finished(response, "failed", output=builder.items, prompt_tokens=builder.prompt_tokens,
                          completion_tokens=builder.completion_tokens,
                          error={"code": error.code or "server_error", "message": error.message})
        if not turn.finishing:  # the client saw the id: GET tells how it ended
            with contextlib.suppress(APIError):
                await _save(runtime, turn, failed)
        return events.error(error.code, error.message, error.param) + events.response("failed", failed)

    return await streaming.respond(runtime, stream(), receive, turn.stop, turn.headers, failed=failed, done=b"",
                                   unbuffered=True)


# -- background ---------------------------------------------------------------------------

async def _start_background(runtime: Runtime, turn: Turn, response: dict[str, Any]) -> dict[str, Any]:
    # Accepted means it will run: a background response takes its queue place now, before any await.
    turn.reservation = runtime.pool(turn.prepared.registration).reserve()
    queued = {**response, "status": "queued"}
    try:
        await _save(runtime, turn, queued)
    except BaseException:
        turn.reservation.release()
        raise
    task = asyncio.create_task(_background(runtime, turn, response), name=f"background {turn.response_id}")
    task.add_done_callback(lambda _task: turn.reservation.release() if turn.reservation else None)
    runtime.background[turn.response_id] = (task, turn.stop)
    task.add_done_callback(lambda _task: runtime.background.pop(turn.response_id, None))
    return queued


async def _background(runtime: Runtime, turn: Turn, response: dict[str, Any]) -> None:
    async def running() -> None:  # once it has an instance
        await _save(runtime, turn, response)

    turn.on_admitted = running
    try:
        await _whole(runtime, turn, response)
    except asyncio.CancelledError:
        turn.stop.set()
        if not turn.finishing:  # else the final answer is (being) stored: it stands
            with contextlib.suppress(APIError):
                await _save(runtime, turn, finished(response, "cancelled"))
        raise
    except Exception as exc:  # noqa: BLE001 - the failure is the response's outcome
        error = streaming.api_error(exc)
        operation, key = current_request()
        log_error(error, f"{operation or 'createResponse'} (background response {turn.response_id})", key=key)
        runtime.count_error(error)
        if turn.reservation is not None:
            turn.reservation.release()  # the retries below hold no queue place
        await _stored_eventually(runtime, turn, finished(response, "failed", error={
            "code": error.code or "server_error", "message": error.message}))


async def _stored_eventually(runtime: Runtime, turn: Turn, outcome: dict[str, Any]) -> None:
    """Store a background response's outcome, retrying while the store fails (a full disk, a
    database restarting) with waits growing to :data:`STORE_RETRY_MAX_S`, for up to
    :data:`STORE_RETRY_FOR_S`: a client polling it reads how it ended, not ``in_progress`` forever."""
    deadline, wait = time.monotonic() + STORE_RETRY_FOR_S, 1.0
    while True:
        try:
            await _save(runtime, turn, outcome)
            return
        except ServiceUnavailableError:  # logged by the store's error
            if time.monotonic() + wait > deadline:
                logger.error("background response %s: its outcome (%s) could not be stored in %.0f s; it stays "
                             "stored as it was before", turn.response_id, outcome["status"], STORE_RETRY_FOR_S)
                return
        except APIError:  # its conversation is gone: nothing to retry
            return
        await asyncio.sleep(wait)
        wait = min(2 * wait, STORE_RETRY_MAX_S)


# -- stored responses ---------------------------------------------------------------------

def _store(runtime: Runtime) -> Store:
    return require_store(runtime, "responses are not stored on this server")


async def _record(runtime: Runtime, response_id: str) -> ResponseRecord:
    record = await in_store(_store(runtime).get_response(response_id))
    if record is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
    return record


async def retrieve(runtime: Runtime, response_id: str) -> dict[str, Any]:
    return (await _record(runtime, response_id)).response


async def delete(runtime: Runtime, response_id: str) -> dict[str, Any]:
    if not await in_store(_store(runtime).delete_response(response_id)):
        raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
    return {"id": response_id, "object": "response.deleted", "deleted": True}


async def cancel(runtime: Runtime, response_id: str) -> dict[str, Any]:
    record = await _record(runtime, response_id)
    if not record.response.get("background"):
        raise InvalidRequestError("Only background responses can be cancelled.", param="response_id")
    running = runtime.background.get(response_id)
    if running is not None:
        task, stop = running
        stop.set()
        task.cancel()
        await asyncio.wait([task])  # not `await task`: a cancel of this handler itself must propagate
    record = await _record(runtime, response_id)  # read after the run ended: its own last word
    if running is None and record.response["status"] not in TERMINAL:  # queued before a restart
        record.response = finished(record.response, "cancelled")
        record.status = "cancelled"
        await in_store(_store(runtime).put_response(record))
    return record.response


async def input_items(runtime: Runtime, response_id: str, after: str | None, limit: int,
                      order: str) -> dict[str, Any]:
    found = await in_store(_store(runtime).input_items(response_id, after=after, limit=limit, order=order))
    if found is None:
        raise NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
    return page(*found)
