"""Sending one request upstream: a replica chosen, failover before the first byte.

:meth:`Upstream.open` returns an :class:`~.answer.Opened` 2xx answer whose headers have
arrived. A connection error or a 5xx before that is retried on another replica (``retries``);
a first-byte timeout is not (the upstream may still be working on it) and answers 504; a 4xx
comes back with its status, its message naming the upstream.

What counts against a replica's health: connection errors, timeouts, broken or malformed
answers, and 502/503/504. Another 5xx may be the request's own doing (an engine answers 500 to
some bad requests), so it counts only once another replica has served the same request; a
request that every replica fails with a 500 does not rest the whole fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from localai_runtime.backends.openai_upstream.answer import Opened
from localai_runtime.backends.openai_upstream.failures import UpstreamError, UpstreamTimeout, upstream_error
from localai_runtime.backends.openai_upstream.replicas import Replica, ReplicaSet
from localai_runtime.backends.openai_upstream.settings import UpstreamSettings
from localai_runtime.backends.openai_upstream.transport import Origin, Pool, TransportError, tls_context
from localai_runtime.errors import APIError, ServiceUnavailableError

logger = logging.getLogger(__name__)

_GATEWAY = frozenset({502, 503, 504})


class Upstream:
    """One registration's upstream: its replicas and the connections shared by its requests."""

    def __init__(self, settings: UpstreamSettings, parallel: int) -> None:
        self.settings = settings
        self.replicas = ReplicaSet(settings.base_urls, settings.failures_to_cool, settings.cooldown_seconds)
        self.headers = {"Content-Type": "application/json", "User-Agent": "localai-runtime"}
        if key := settings.api_key():
            self.headers["Authorization"] = f"Bearer {key}"
        origins = [Origin.parse(url) for url in settings.base_urls]
        tls = tls_context(origins)
        self.pools = {url: Pool(origin, tls, parallel) for url, origin in zip(settings.base_urls, origins, strict=True)}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self, path: str, body: Mapping[str, Any]) -> Opened:
        """POST ``body`` to ``path`` (``/chat/completions``) on a replica, failing over."""
        self._loop = asyncio.get_running_loop()
        content = json.dumps(body, ensure_ascii=False).encode()
        tried: list[Replica] = []
        excluded: set[str] = set()  # tried, or failed its probe just now
        suspects: list[tuple[Replica, int]] = []  # answered a 5xx that may be the request's fault
        failure: APIError | None = None
        while len(tried) <= self.settings.retries:
            replica = await self._choose(excluded)
            if replica is None:
                break
            if tried:
                self.replicas.failovers += 1
                logger.info("upstream: retrying on %s after %s failed", replica.url, tried[-1].url)
            tried.append(replica)
            excluded.add(replica.url)
            deadline = time.monotonic() + self.settings.first_byte
            replica.in_flight += 1
            try:
                async with asyncio.timeout(self.settings.first_byte):
                    response = await self.pools[replica.url].request("POST", path, content, self.headers,
                                                                     self.settings.connect)
                    if 200 <= response.status < 300:
                        self._clear(suspects)
                        return Opened(self, replica, response, deadline)
                    try:
                        error = upstream_error(replica.url, response.status, await response.read(), response.headers)
                    finally:
                        response.close()
            except TimeoutError:
                replica.in_flight -= 1
                raise self.timed_out(replica, "the answer") from None
            except TransportError as exc:
                replica.in_flight -= 1
                failure = self.unreachable(replica, exc)
                continue
            except BaseException:
                replica.in_flight -= 1
                raise
            replica.in_flight -= 1
            if response.status < 500:
                replica.outcomes["upstream_4xx" if response.status >= 400 else "upstream_3xx"] += 1
                self._clear(suspects)
                if response.status < 400:  # a redirect: the base URL is not the engine's own
                    raise UpstreamError(502, f"The upstream {replica.url} answered {response.status} (a redirect"
                                             f" to {response.headers.get('location', '?')}); put the final URL in "
                                             "base_urls", code="upstream_redirected")
                raise error
            replica.outcomes["upstream_5xx"] += 1
            if response.status in _GATEWAY:
                self.replicas.failed(replica, f"answered {response.status}")
            else:
                suspects.append((replica, response.status))
            failure = error
        if failure is not None:
            raise failure
        wait = self.replicas.soonest_back()
        raise ServiceUnavailableError(
            "Every replica of the upstream is cooling down after failing; try again shortly.",
            code="upstream_unavailable", headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def _clear(self, suspects: list[tuple[Replica, int]]) -> None:
        """Another replica took the request: the 5xx answers it got before were the replicas' fault."""
        for replica, status in suspects:
            self.replicas.failed(replica, f"answered {status}")

    async def _choose(self, excluded: set[str]) -> Replica | None:
        for replica in self.replicas.candidates(excluded):
            if not replica.cool_until:
                return replica
            if await self._probe(replica):
                return replica
            excluded.add(replica.url)
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
            healthy = 200 <= response.status < 500
            why = None if healthy else f"probe answered {response.status}"
        except (TransportError, TimeoutError) as exc:
            healthy, why = False, f"probe failed: {exc or 'timed out'}"
        finally:
            replica.probing = False
        replica.outcomes["probe_ok" if healthy else "probe_failed"] += 1
        if healthy:
            logger.info("upstream %s answered its probe; back in use", replica.url)
            self.replicas.succeeded(replica)
        else:
            self.replicas.failed(replica, why or "probe failed")
        return healthy

    def charge(self, replica: Replica, outcome: str, why: str) -> None:
        """Count a failure of ``replica`` (its outcome, and against its health)."""
        replica.outcomes[outcome] += 1
        self.replicas.failed(replica, why[:300])
        logger.warning("upstream %s failed: %s", replica.url, why)

    def unreachable(self, replica: Replica, exc: Exception) -> UpstreamError:
        """A connection that could not be made, or broke before the answer began."""
        self.charge(replica, "connect_error", str(exc) or type(exc).__name__)
        return UpstreamError(502, f"The upstream {replica.url} could not be reached or broke off: {exc}",
                             code="upstream_unavailable")

    def broke_off(self, replica: Replica, exc: Exception) -> UpstreamError:
        """A connection that broke while the answer was being read."""
        self.charge(replica, "broken", str(exc) or type(exc).__name__)
        return UpstreamError(502, f"The upstream {replica.url} broke off its answer: {exc}",
                             code="upstream_unavailable")

    def timed_out(self, replica: Replica, what: str) -> UpstreamTimeout:
        limit = self.settings.idle if what == "the next stream event" else self.settings.first_byte
        self.charge(replica, "timeout", f"timed out waiting for {what}")
        return UpstreamTimeout(f"The upstream {replica.url} did not send {what} within {limit:g} s.")

    async def aclose(self) -> None:
        for pool in self.pools.values():
            pool.close()

    def close_soon(self) -> None:
        """Close the connections from any thread (the registration was unloaded or replaced)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            for pool in self.pools.values():  # never used on a loop: nothing is open
                pool.close()
            return

        def close() -> None:
            task = loop.create_task(self.aclose())
            _closing.add(task)
            task.add_done_callback(_closing.discard)

        with contextlib.suppress(RuntimeError):  # the loop stopped meanwhile
            loop.call_soon_threadsafe(close)


_closing: set[asyncio.Task[None]] = set()
