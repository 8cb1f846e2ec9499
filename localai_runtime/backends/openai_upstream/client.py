"""Sending one request upstream: a replica chosen, failover before the first byte, errors in
OpenAI's shape with the upstream's status kept.

:meth:`Upstream.open` returns an :class:`Opened` answer whose status is below 400 and whose
headers have arrived; reading it (:meth:`Opened.json`, :meth:`Opened.events`) keeps to the
first-byte and idle timeouts. A connection error or a 5xx before that is retried on another
replica (``retries``); a first-byte timeout is not (the upstream may still be working on it) and
answers 504. An upstream 4xx comes back with its status, its message naming the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from localai_runtime.backends.openai_upstream.replicas import Replica, ReplicaSet
from localai_runtime.backends.openai_upstream.settings import UpstreamSettings
from localai_runtime.backends.openai_upstream.streams import UpstreamStreamError, sse_data
from localai_runtime.backends.openai_upstream.transport import Origin, Pool, Response, TransportError, tls_context
from localai_runtime.errors import APIError, ServiceUnavailableError

logger = logging.getLogger(__name__)

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 429: "rate_limit_error"}


class UpstreamError(APIError):
    """An error answered by (or about) the upstream, with its own status."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.status = status
        self.type = type or _TYPES.get(status, "api_error")


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(504, message, type="timeout_error", code="upstream_timeout")


def upstream_error(replica: Replica, status: int, content: bytes) -> UpstreamError:
    """The upstream's error answer in OpenAI's shape: its message, type, param and code kept."""
    message, details = content.decode("utf-8", "replace").strip()[:2000], {}
    try:
        parsed = json.loads(content)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping):
        error = parsed.get("error", parsed)
        if isinstance(error, Mapping):
            details = error
            message = str(error.get("message") or error.get("detail") or message)
        elif isinstance(error, str):
            message = error
    param, code = details.get("param"), details.get("code")
    return UpstreamError(status, f"The upstream {replica.url} answered {status}: {message}",
                         type=details.get("type") if isinstance(details.get("type"), str) else None,
                         param=param if isinstance(param, str) else None,
                         code=str(code) if code is not None else "upstream_error")


class Opened:
    """An upstream answer whose headers have arrived (status < 400)."""

    def __init__(self, upstream: Upstream, replica: Replica, response: Response, deadline: float) -> None:
        self.upstream = upstream
        self.replica = replica
        self.response = response
        self._deadline = deadline  # the first byte's, on the monotonic clock
        self._closed = False
        self._outcome = "ok"

    async def json(self) -> Any:
        try:
            async with asyncio.timeout(max(0.0, self._deadline - time.monotonic())):
                content = await self.response.read()
        except TimeoutError:
            raise self.upstream.timed_out(self.replica, "the answer") from None
        except TransportError as exc:
            self.upstream.broke(self.replica, exc)
            raise self.upstream.unreachable(self.replica, exc) from exc
        try:
            return json.loads(content)
        except ValueError as exc:
            raise UpstreamError(502, f"The upstream {self.replica.url} answered something that is not JSON",
                                code="bad_upstream_answer") from exc

    async def events(self) -> AsyncIterator[str]:
        """The data of each server-sent event; the first within the first-byte timeout, each
        next one within the idle timeout. Ends at the stream's end (``[DONE]`` is yielded)."""
        lines = self.response.lines()
        budget = max(0.0, self._deadline - time.monotonic())
        what = "the stream's first event"
        while True:
            try:
                async with asyncio.timeout(budget):
                    data = await sse_data(lines)
            except TimeoutError:
                raise self.upstream.timed_out(self.replica, what) from None
            except TransportError as exc:
                self.upstream.broke(self.replica, exc)
                raise self.upstream.unreachable(self.replica, exc) from exc
            if data is None:
                return
            yield data
            budget, what = self.upstream.settings.idle, "the next stream event"

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[Opened]:
        """Reads the answer in the block, then gives the connection back, counting how the
        request ended: ok (or what :meth:`count_as` said), cancelled (the
        client left), or a failure already counted as the replica's."""
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
            await self.close(outcome)

    def count_as(self, outcome: str) -> None:
        """How the request ended when its block ends normally: the upstream's stream reported an
        error of its own (``stream_error``), or the reader stopped early (``cancelled``)."""
        self._outcome = outcome

    async def close(self, outcome: str | None) -> None:
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


class Upstream:
    """One registration's upstream: its replicas and a connection pool shared by its requests."""

    def __init__(self, settings: UpstreamSettings, parallel: int) -> None:
        self.settings = settings
        self.replicas = ReplicaSet(settings.base_urls, settings.failures_to_cool, settings.cooldown_seconds)
        self.headers = {"Content-Type": "application/json", "User-Agent": "localai-runtime"}
        if key := settings.api_key():
            self.headers["Authorization"] = f"Bearer {key}"
        origins = [Origin.parse(url) for url in settings.base_urls]
        tls = tls_context(origins)
        self.pools = {url: Pool(origin, tls, parallel) for url, origin in zip(settings.base_urls, origins, strict=True)}

    async def open(self, path: str, body: Mapping[str, Any]) -> Opened:
        """POST ``body`` to ``path`` (``/chat/completions``) on a replica, failing over."""
        self._loop = asyncio.get_running_loop()
        content = json.dumps(body, ensure_ascii=False).encode()
        tried: set[str] = set()
        failure: APIError | None = None
        while len(tried) <= self.settings.retries:
            replica = await self._choose(tried)
            if replica is None:
                break
            if tried:
                self.replicas.failovers += 1
            tried.add(replica.url)
            deadline = time.monotonic() + self.settings.first_byte
            replica.in_flight += 1
            try:
                async with asyncio.timeout(self.settings.first_byte):
                    response = await self.pools[replica.url].request("POST", path, content, self.headers,
                                                                     self.settings.connect)
            except TimeoutError:
                replica.in_flight -= 1
                raise self.timed_out(replica, "the answer") from None
            except TransportError as exc:
                replica.in_flight -= 1
                self.broke(replica, exc)
                failure = self.unreachable(replica, exc)
                continue
            except BaseException:
                replica.in_flight -= 1
                raise
            if response.status < 400:
                return Opened(self, replica, response, deadline)
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    error = upstream_error(replica, response.status, await response.read())
            except (TransportError, TimeoutError) as exc:
                error = self.unreachable(replica, exc)
            finally:
                replica.in_flight -= 1
                response.close()
            if response.status < 500:
                replica.outcomes["upstream_4xx"] += 1
                self.replicas.succeeded(replica)
                raise error
            replica.outcomes["upstream_5xx"] += 1
            self.replicas.failed(replica, f"answered {response.status}")
            failure = error
        if failure is not None:
            raise failure
        wait = self.replicas.soonest_back()
        raise ServiceUnavailableError(
            "Every replica of the upstream is cooling down after failing; try again shortly.",
            code="upstream_unavailable", headers={"Retry-After": str(max(1, math.ceil(wait)))})

    async def _choose(self, tried: set[str]) -> Replica | None:
        for replica in self.replicas.candidates(tried):
            if not replica.cool_until:
                return replica
            if await self._probe(replica):
                return replica
            tried.add(replica.url)
        return None

    async def _probe(self, replica: Replica) -> bool:
        """A resting replica is asked for its models before it takes requests again."""
        replica.probing = True
        try:
            async with asyncio.timeout(self.settings.connect + 5):
                response = await self.pools[replica.url].request("GET", "/models", b"", self.headers,
                                                                 self.settings.connect)
                try:
                    await response.read()
                finally:
                    response.close()
            healthy = response.status < 500
            if not healthy:
                replica.last_error = f"probe answered {response.status}"
        except (TransportError, TimeoutError) as exc:
            healthy, replica.last_error = False, f"probe failed: {exc or type(exc).__name__}"
        finally:
            replica.probing = False
        replica.outcomes["probe_ok" if healthy else "probe_failed"] += 1
        if healthy:
            logger.info("upstream %s answered its probe; back in use", replica.url)
            self.replicas.succeeded(replica)
        else:
            self.replicas.failed(replica, replica.last_error or "probe failed")
        return healthy

    def broke(self, replica: Replica, exc: Exception) -> None:
        replica.outcomes["connect_error"] += 1
        self.replicas.failed(replica, str(exc)[:300] or type(exc).__name__)
        logger.warning("upstream %s failed: %s", replica.url, replica.last_error)

    def unreachable(self, replica: Replica, exc: Exception) -> UpstreamError:
        return UpstreamError(502, f"The upstream {replica.url} could not be reached or broke off: "
                                  f"{exc or type(exc).__name__}", code="upstream_unavailable")

    def timed_out(self, replica: Replica, what: str) -> UpstreamTimeout:
        replica.outcomes["timeout"] += 1
        self.replicas.failed(replica, f"timed out waiting for {what}")
        limit = self.settings.first_byte if "first" in what or what == "the answer" else self.settings.idle
        return UpstreamTimeout(f"The upstream {replica.url} did not send {what} within {limit:g} s.")

    async def aclose(self) -> None:
        for pool in self.pools.values():
            pool.close()

    def close_soon(self) -> None:
        """Close the connections from any thread (the registration was unloaded or replaced)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def close() -> None:
            task = loop.create_task(self.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)

        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
            loop.call_soon_threadsafe(close)


_closing: set[asyncio.Task[None]] = set()
