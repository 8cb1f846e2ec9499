"""A record of every request a client sends to a live test server, and what it was answered.

:class:`RequestLog` is an ASGI middleware put in front of the server's app: it keeps each
request's method, path, JSON body and answer status (and the body of an error answer), so a test
driving a real client it does not control (Codex CLI, the AI SDK in node) can assert what the
client sent and that nothing was refused.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from localai_runtime import Settings
from tests.conftest import REPO, LiveServer, free_port


@dataclass
class Exchange:
    method: str
    path: str
    body: Any
    status: int = 0
    error: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    answer_headers: dict[str, str] = field(default_factory=dict)


class RequestLog:
    def __init__(self, app) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str):  # the wrapped app's attributes (``runtime``) stay reachable
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        exchange = Exchange(scope["method"], scope["path"], None,
                            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]})
        with self._lock:
            self.exchanges.append(exchange)
        answer: list[bytes] = []

        async def receiving():
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    exchange.body = _json(b"".join(chunks))
            return message

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                exchange.answer_headers = {k.decode("latin-1"): v.decode("latin-1")
                                           for k, v in message.get("headers", [])}
            elif message["type"] == "http.response.body" and exchange.status >= 400:
                answer.append(message.get("body", b""))
                if not message.get("more_body"):
                    exchange.error = _json(b"".join(answer))
            await send(message)

        await self.app(scope, receiving, sending)

    def posts(self, path: str) -> list[Exchange]:
        with self._lock:
            return [exchange for exchange in self.exchanges if exchange.method == "POST" and exchange.path == path]

    def refused(self) -> list[Exchange]:
        with self._lock:
            return [exchange for exchange in self.exchanges if exchange.status >= 400]

    @contextlib.contextmanager
    def checked(self) -> Iterator[RequestLog]:
        """This log, emptied; when the block ends, no request of it may have been refused."""
        with self._lock:
            self.exchanges.clear()
        yield self
        refused = [(exchange.path, exchange.status, exchange.error) for exchange in self.refused()]
        assert not refused, refused


def _json(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return data.decode("utf-8", "replace")


@pytest.fixture(name="log")
def request_log(logged) -> Iterator[RequestLog]:
    """The log of the module's ``logged`` fixture (a server and its log), emptied for the test;
    after it, no request may have been refused."""
    with logged[1].checked() as checked:
        yield checked


@contextlib.contextmanager
def logged_server(built, configs: Path, files: dict[str, list], *examples: str,
                  **overrides) -> Iterator[tuple[LiveServer, RequestLog]]:
    """A live server on registrations written to ``configs`` (``files``: file name to its
    entries) and the ``examples`` (file names in ``configs/examples/``), every request recorded
    in the yielded :class:`RequestLog`."""
    import shutil

    import yaml

    for name, entries in files.items():
        (configs / name).write_text(yaml.safe_dump(entries))
    for name in examples:
        shutil.copy(REPO / "configs" / "examples" / name, configs)
    live = LiveServer(Settings(**{"port": free_port(), "configs_dir": configs, **overrides}), built)
    log = RequestLog(live.app)
    live.server.config.app = log  # loaded by uvicorn when the server starts
    live.start()
    try:
        yield live, log
    finally:
        live.stop()
