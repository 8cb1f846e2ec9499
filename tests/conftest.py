"""Shared fixtures: a real uvicorn server on 127.0.0.1 and the official OpenAI client.

Servers run in a background thread of the test process on a free port; the client talks
HTTP to them exactly as a user's would.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from localai_runtime import Settings, create_app
from localai_runtime.settings import resource_dir
from localai_runtime.spec_pipeline import BuiltSpec, build_spec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def testing_spec(tmp_path_factory) -> BuiltSpec:
    """The shipped spec plus the test-only operations of ``tests/fake_spec/``."""
    import shutil

    fragments = tmp_path_factory.mktemp("spec")
    for source in [*resource_dir("spec").iterdir(), *(REPO / "tests" / "fake_spec").iterdir()]:
        shutil.copy(source, fragments / source.name)
    return build_spec(spec_path=None, fragments_dir=fragments, patches_dir=resource_dir("patches"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    def __init__(self, settings: Settings, built: BuiltSpec | None = None, backends=None) -> None:
        self.settings = settings
        self.app = create_app(settings, built, backends)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def client(self, api_key: str = "unused", **kwargs) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, **kwargs)

    def http(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


@contextlib.contextmanager
def live_server(built: BuiltSpec | None = None, backends=None, **overrides) -> Iterator[LiveServer]:
    settings = Settings(**{"port": free_port(), **overrides})
    server = LiveServer(settings, built, backends).start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def demo_and_echo_server(built: BuiltSpec, directory: Path, echo_configs: str, **overrides) -> Iterator[LiveServer]:
    """A live server with the shipped llama-cpp demo registrations beside echo-backend ones
    (``echo_configs``, YAML), both through the real backend registry."""
    import shutil
    import textwrap

    from localai_runtime.backends import BackendRegistry
    from tests.fake_backend import EchoBackend

    shutil.copy(resource_dir("configs") / "demo-llama-cpp.yaml", directory)
    (directory / "echo.yaml").write_text(textwrap.dedent(echo_configs))
    backends = BackendRegistry.from_entry_points()
    backends.register("echo", EchoBackend)
    with live_server(built, backends=backends, configs_dir=directory, **overrides) as live:
        yield live


@pytest.fixture(scope="session")
def built_spec() -> BuiltSpec:
    """The default patched document, built once (tests must not mutate it)."""
    return build_spec(spec_path=None, fragments_dir=resource_dir("spec"), patches_dir=resource_dir("patches"))


@pytest.fixture(scope="session")
def server(built_spec: BuiltSpec) -> Iterator[LiveServer]:
    with live_server(built_spec) as live:
        yield live


class ResponseSchemas:
    """Validates response bodies and stream chunks against the served document's own schemas."""

    def __init__(self, built: BuiltSpec) -> None:
        from localai_runtime.schemas import SchemaCache, describe, document_ref

        self._ref = document_ref
        self._describe = describe
        self._cache = SchemaCache(built.document)
        self._schemas: dict[str, dict] = {}

    def check(self, component: str, body) -> None:
        schema = self._schemas.setdefault(component, self._ref(f"/components/schemas/{component}"))
        error = self._cache.first_error(schema, body)
        assert error is None, f"{component}: {self._describe(error)[0]}\n{body}"


@pytest.fixture(scope="session")
def response_schemas(built_spec: BuiltSpec) -> ResponseSchemas:
    return ResponseSchemas(built_spec)
