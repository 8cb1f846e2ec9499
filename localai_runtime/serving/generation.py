"""Running a blocking backend generator in a worker thread, from the event loop.

:func:`run_pieces` yields the backend's :class:`Piece` objects as the thread produces them,
so the event loop is never blocked by inference. When the consumer stops early (a client
disconnected, the response was cancelled), the thread is told to stop through
``should_stop``; the model instance's :class:`~localai_runtime.serving.leases.Lease` tracks the thread,
so the instance is lent again only once the thread has finished. (Awaiting the thread here is
not enough: a cancelled task can be cancelled again while it waits.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from localai_runtime.backends import Piece, Pieces
from localai_runtime.errors import ClientClosedRequest
from localai_runtime.observability.metrics import UNOBSERVED, RequestMetrics, Unobserved
from localai_runtime.serving.leases import Lease

logger = logging.getLogger(__name__)

T = TypeVar("T")
Observer = RequestMetrics | Unobserved
_DONE = object()
FIRST_PIECE_WAIT_S = 0.05
"""The longest a generation waits for its first piece to be sent before going on."""


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class GenerationCounter:
    """How many generations run right now (shown by /readyz)."""

    def __init__(self) -> None:
        self.active = 0
        self.total = 0


def start_work(
    loop: asyncio.AbstractEventLoop,
    executor: Executor,
    work: Callable[[], Any],
    counter: GenerationCounter | None,
    lease: Lease | None,
) -> asyncio.Future[Any]:
    """Run ``work`` in a worker thread, counted, and tracked by the instance's lease; returns a
    future of its result.

    The lease and the counter follow the thread itself, not the returned future: when the task
    awaiting that future is cancelled (a client went away, a timeout, shutdown), the future is
    done at once but the thread runs on, and the instance must not be lent again before the
    thread has returned. Work cancelled before its thread started never runs.
    """
    ended = loop.create_future()
    if lease is not None:
        lease.track(ended)
    if counter is not None:
        counter.active += 1
        counter.total += 1

        def finished(_ended: asyncio.Future[None]) -> None:
            counter.active -= 1

        ended.add_done_callback(finished)
    submitted = executor.submit(work)

    def thread_done(_submitted: Future[Any]) -> None:
        # Called in the worker thread once work returned, or here at once if it never started.
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, ended)

    submitted.add_done_callback(thread_done)
    return asyncio.wrap_future(submitted, loop=loop)


def _settle(ended: asyncio.Future[None]) -> None:
    if not ended.done():
        ended.set_result(None)


async def run_pieces(
    method: Callable[[Mapping[str, Any], Callable[[], bool]], Pieces],
    request: Mapping[str, Any],
    *,
    stop: threading.Event | None = None,
    counter: GenerationCounter | None = None,
    executor: Executor,
    lease: Lease | None = None,
    observer: Observer = UNOBSERVED,
) -> AsyncGenerator[Piece, None]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = stop or threading.Event()
    first_sent = threading.Event()

    def work() -> None:
        try:
            # closing(): the backend's generator finishes (and joins any thread of its own)
            # here, in this thread, before the instance can be handed to another request.
            with contextlib.closing(method(request, stop.is_set)) as generated:
                for piece in generated:
                    if piece.text or piece.tool_calls:
                        observer.piece()
                    loop.call_soon_threadsafe(queue.put_nowait, piece)
                    if not first_sent.is_set():
                        # The backend's compute threads take every core while it generates:
                        # let the event loop send the first piece (and the response headers)
                        # before generating on. Time to first token, not throughput, is at stake.
                        first_sent.wait(FIRST_PIECE_WAIT_S)
                        first_sent.set()
                    if stop.is_set():
                        break
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop
            loop.call_soon_threadsafe(queue.put_nowait, _Failed(exc))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    start_work(loop, executor, work, counter, lease)
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                break
            if isinstance(item, _Failed):
                raise item.exc
            yield item
            first_sent.set()  # the consumer has handled this piece and asks for the next
    finally:
        first_sent.set()
        stop.set()


async def collect_pieces(
    method: Callable[[Mapping[str, Any], Callable[[], bool]], Pieces],
    request: Mapping[str, Any],
    *,
    stop: threading.Event,
    counter: GenerationCounter,
    executor: Executor,
    lease: Lease,
    observer: Observer = UNOBSERVED,
) -> list[Piece]:
    """The whole output at once, for responses that are not streamed: one hand-over from the
    worker thread instead of one per piece (it matters for short generations)."""

    def work() -> list[Piece]:
        pieces = []
        with contextlib.closing(method(request, stop.is_set)) as generated:
            for piece in generated:
                if piece.text or piece.tool_calls:
                    observer.piece()
                pieces.append(piece)
        return pieces

    thread = start_work(asyncio.get_running_loop(), executor, work, counter, lease)
    try:
        return await thread
    finally:
        stop.set()


async def until_disconnected(work: Awaitable[T], receive: Callable[[], Any], stop: threading.Event) -> T:
    """The result of ``work``, awaited in the calling task, unless the client goes away first:
    then ``stop`` is set (a generation's thread ends within a token, or a prompt batch), this
    task is cancelled, so ``work`` unwinds (a request still queued gives its place up, an
    upstream request is closed), and :class:`ClientClosedRequest` is raised. ``stop`` is set
    however ``work`` is cancelled (a shutdown too).

    Until a response starts nobody else reads ``receive``; once it has, the streaming response
    watches for the disconnect itself.
    """
    task = asyncio.current_task()
    assert task is not None
    left = False

    async def watch() -> None:
        nonlocal left
        while (await receive())["type"] != "http.disconnect":
            pass
        logger.info("client disconnected; stopping its request")
        left = True
        stop.set()
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        stop.set()
        if left and task.uncancel() == 0:
            raise ClientClosedRequest("The client closed the connection before its answer began.") from None
        raise
    finally:
        watcher.cancel()
