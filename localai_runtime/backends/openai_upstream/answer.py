"""An upstream answer being read: :class:`Opened`, whose status and headers have arrived.

Reading keeps to the first-byte and idle timeouts, and everything that goes wrong while
reading is counted against the replica (a timeout, a broken connection, an answer that is not
what was asked for, a stream cut before ``[DONE]``). :meth:`Opened.reading` gives the
connection back at the end of its block, counting how the request ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from localai_runtime.backends.openai_upstream.failures import (
    UpstreamError,
    UpstreamStreamError,
    bad_answer,
    parse_event,
)
from localai_runtime.backends.openai_upstream.replicas import Replica
from localai_runtime.backends.openai_upstream.streams import DONE, sse_data
from localai_runtime.backends.openai_upstream.transport import Response, TransportError

if TYPE_CHECKING:
    from localai_runtime.backends.openai_upstream.client import Upstream

DRAIN_S = 2.0
"""After ``[DONE]``, how long the end of the body may take to arrive (then the connection is
closed instead of kept for the next request)."""


class Opened:
    """An upstream answer whose headers have arrived (a 2xx)."""

    def __init__(self, upstream: Upstream, replica: Replica, response: Response, deadline: float) -> None:
        self.upstream = upstream
        self.replica = replica
        self.response = response
        self._deadline = deadline  # the first byte's, on the monotonic clock
        self._closed = False
        self._outcome = "ok"

    @property
    def url(self) -> str:
        return self.replica.url

    async def json(self) -> Any:
        content = await self._next(self.response.read(), max(0.0, self._deadline - time.monotonic()), "the answer")
        try:
            return json.loads(content)
        except ValueError:
            raise self._bad("answered something that is not JSON") from None

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """Each event of the stream as a JSON object: the first within the first-byte timeout,
        each next one within the idle timeout, up to ``[DONE]`` (not yielded). A stream that
        ends without ``[DONE]`` was cut: a 502-class error."""
        if self.response.content_type != "text/event-stream":
            raise self._bad(f"answered a stream request with {self.response.content_type or 'no content type'}, "
                            "not text/event-stream")
        lines = self.response.lines()
        budget = max(0.0, self._deadline - time.monotonic())
        what = "the stream's first event"
        while True:
            data = await self._next(sse_data(lines), budget, what)
            if data is None:
                raise self._bad("ended its stream without [DONE]")
            if data == DONE:
                break
            try:
                chunk = parse_event(data, self.url)
            except UpstreamError:
                raise self._bad("sent a stream event that is not a JSON object") from None
            yield chunk
            budget, what = self.upstream.settings.idle, "the next stream event"
        with contextlib.suppress(TimeoutError, TransportError):  # the body's end: keep the connection
            async with asyncio.timeout(min(DRAIN_S, self.upstream.settings.idle)):
                async for _ in lines:
                    pass

    async def _next(self, reading: Any, budget: float, what: str) -> Any:
        """What ``reading`` gives within ``budget`` seconds; a timeout or a broken connection is
        the replica's failure."""
        try:
            async with asyncio.timeout(budget):
                return await reading
        except TimeoutError:
            raise self.upstream.timed_out(self.replica, what) from None
        except TransportError as exc:
            raise self.upstream.broke_off(self.replica, exc) from exc

    def _bad(self, what: str) -> UpstreamError:
        self.upstream.charge(self.replica, "bad_answer", what)
        return bad_answer(self.url, what)

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Opened]:
        """Reads the answer in the block, then gives the connection back, counting how the
        request ended: ok (or what :meth:`count_as` said), cancelled (the client left), a
        stream error the upstream reported, or a failure already counted as the replica's."""
        outcome: str | None = "cancelled"
        try:
            yield self
            outcome = self._outcome
        except UpstreamStreamError:
            outcome = "stream_error"
            raise
        except UpstreamError:
            outcome = None
            raise
        finally:
            self.close(outcome)

    def count_as(self, outcome: str) -> None:
        """How the request ended when its block ends normally: the upstream's stream reported an
        error of its own (``stream_error``), or the reader stopped early (``cancelled``)."""
        self._outcome = outcome

    def close(self, outcome: str | None) -> None:
        """Give the connection back; ``outcome`` counts the request (None: already counted as
        the failure that ended it)."""
        if self._closed:
            return
        self._closed = True
        self.replica.in_flight -= 1
        if outcome is not None:
            self.replica.outcomes[outcome] += 1
        if outcome == "ok":
            self.upstream.replicas.succeeded(self.replica)
        self.response.close()
