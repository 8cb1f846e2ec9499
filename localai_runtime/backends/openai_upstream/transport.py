"""A lean HTTP/1.1 client for the upstream: kept-alive connections per replica, on asyncio streams.

The front door's added latency is the point of this backend, and a general-purpose client adds
about as much per request as the engine takes to answer a short completion (BENCHMARKS.md). This
one does what an OpenAI-compatible engine needs and no more: POST and GET with a JSON body,
``Content-Length`` or chunked answers, TLS for ``https``, and an idle connection reused for the
next request (a reused connection the engine had closed is retried once on a fresh one, when
nothing at all was read back). Errors of the network are :class:`TransportError`; timeouts are the
caller's (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

_LIMIT = 1024 * 1024  # the longest head or line read at once (a stream event's data line)
_RETRYABLE = (ConnectionResetError, BrokenPipeError)


class TransportError(Exception):
    """The connection could not be made, or broke, or the answer was not HTTP/1.1."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    prefix: str  # the base URL's path, without a trailing slash

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        """``base_url``'s parts; ValueError saying what is wrong with it."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("not an http:// or https:// URL with a host")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("a base URL has no query, fragment or credentials (use api_key_env)")
        port = parts.port or (443 if parts.scheme == "https" else 80)  # ValueError: a port out of range
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Response:
    """An answer whose status line and headers have been read; the body is read on demand."""

    def __init__(self, pool: Pool, connection: Connection, status: int, headers: dict[str, str],
                 keep_alive: bool) -> None:
        self._pool, self._connection = pool, connection
        self.status, self.headers = status, headers
        self._keep_alive = keep_alive
        self._done = False  # the body was read to its end: the connection may be reused

    @property
    def chunked(self) -> bool:
        codings = self.headers.get("transfer-encoding", "")
        return codings.rsplit(",", 1)[-1].strip().lower() == "chunked"

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    async def read(self) -> bytes:
        try:
            if self.chunked:
                body = b"".join([chunk async for chunk in self._chunks()])
            elif "content-length" in self.headers:
                body = await self._connection.reader.readexactly(int(self.headers["content-length"]))
            else:
                body = await self._connection.reader.read()
                self._keep_alive = False
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise TransportError(f"the answer broke off: {type(exc).__name__}") from exc
        self._done = True
        return body

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive (chunked, sized, or delimited by the connection closing)."""
        pending = b""
        try:
            if self.chunked:
                async for chunk in self._chunks():
                    *complete, pending = (pending + chunk).split(b"\n")
                    for line in complete:
                        yield line.rstrip(b"\r").decode("utf-8", "replace")
            elif "content-length" in self.headers:
                body = await self._connection.reader.readexactly(int(self.headers["content-length"]))
                *complete, pending = body.split(b"\n")
                for line in complete:
                    yield line.rstrip(b"\r").decode("utf-8", "replace")
            else:
                async for line in self._connection.reader:
                    yield line.rstrip(b"\r\n").decode("utf-8", "replace")
                self._keep_alive = False
            self._done = True
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise TransportError(f"the stream broke off: {type(exc).__name__}") from exc
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")

    async def _chunks(self) -> AsyncIterator[bytes]:
        reader = self._connection.reader
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]

    def close(self) -> None:
        """Give the connection back for reuse if its answer was read whole, else close it."""
        connection, self._connection = self._connection, None  # type: ignore[assignment]
        if connection is None:
            return
        if self._done and self._keep_alive:
            self._pool.put(connection)
        else:
            connection.close()


class Pool:
    """Idle connections to one origin (at most ``keep`` of them)."""

    def __init__(self, origin: Origin, tls: ssl.SSLContext | None, keep: int) -> None:
        self.origin = origin
        self._tls = tls
        self._keep = keep
        self._idle: deque[Connection] = deque()
        self._closed = False
        self.reconnects = 0
        """Requests re-sent on a fresh connection because the engine had closed an idle one."""

    def put(self, connection: Connection) -> None:
        if not self._closed and len(self._idle) < self._keep and not connection.writer.is_closing():
            self._idle.append(connection)
        else:
            connection.close()

    async def _connect(self, timeout: float) -> Connection:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    self.origin.host, self.origin.port, ssl=self._tls, limit=_LIMIT,
                    server_hostname=self.origin.host if self._tls else None)
        except TimeoutError as exc:
            raise TransportError(f"connecting took longer than {timeout:g} s") from exc
        except OSError as exc:
            raise TransportError(f"cannot connect: {exc.strerror or type(exc).__name__}") from exc
        return Connection(reader, writer)

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str],
                      connect_timeout: float) -> Response:
        head = [f"{method} {self.origin.prefix}{path} HTTP/1.1", f"Host: {self.origin.netloc}",
                f"Content-Length: {len(body)}", *(f"{name}: {value}" for name, value in headers.items())]
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        fresh_only = False
        while True:
            connection = self._idle_connection() if not fresh_only else None
            reused = connection is not None
            connection = connection or await self._connect(connect_timeout)
            try:
                connection.writer.write(message)
                status, response_headers, keep_alive = await _read_head(connection.reader)
            except (*_RETRYABLE, asyncio.IncompleteReadError) as exc:
                connection.close()
                nothing_read = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
                if reused and nothing_read:  # the engine closed it while it was idle
                    self.reconnects += 1
                    logger.info("%s closed a kept-alive connection; sending again on a fresh one",
                                self.origin.netloc)
                    fresh_only = True
                    continue
                raise TransportError(f"the answer broke off: {type(exc).__name__}") from exc
            except (OSError, asyncio.LimitOverrunError, ValueError) as exc:
                connection.close()
                raise TransportError(f"the answer broke off or is not HTTP/1.1: {type(exc).__name__}") from exc
            except BaseException:
                connection.close()
                raise
            return Response(self, connection, status, response_headers, keep_alive)

    def _idle_connection(self) -> Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.reader.at_eof() and not connection.writer.is_closing():
                return connection
            connection.close()
        return None

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
    while True:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        version, status, *_ = lines[0].split(" ", 2)
        if not version.startswith("HTTP/1.") or not status.isdigit():
            raise ValueError(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
        if not 100 <= int(status) < 200:
            break  # an informational answer (100 Continue, 103 Early Hints) precedes the real one
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    return int(status), headers, keep_alive


def tls_context(origins: list[Origin]) -> ssl.SSLContext | None:
    return ssl.create_default_context() if any(origin.scheme == "https" for origin in origins) else None
