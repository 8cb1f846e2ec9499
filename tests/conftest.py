"""Shared fixtures: a real uvicorn server on 127.0.0.1 and the official OpenAI client.

Servers run in a background thread of the test process on a free port; the client talks
HTTP to them exactly as a user's would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from localai_runtime import Settings, create_app
from localai_runtime.serving.pool import ModelPool
from localai_runtime.settings import resource_dir
from localai_runtime.spec.build import BuiltSpec, build_spec
from tests.postgres_server import postgres_server, postgres_url  # noqa: F401  (fixtures for every test module)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def isolated_data_dir(tmp_path_factory) -> Iterator[Path]:
    """Servers in tests keep their response store in a temporary directory, never the user's."""
    directory = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOCALAI_DATA_DIR", str(directory))
        yield directory


@pytest.fixture(scope="module")
def testing_spec(tmp_path_factory) -> BuiltSpec:
    """The shipped spec plus the test-only operations of ``tests/fake_spec/``."""
    import shutil

    fragments = tmp_path_factory.mktemp("spec")
    for source in [*resource_dir("spec").iterdir(), *(REPO / "tests" / "fake_spec").iterdir()]:
        (shutil.copytree if source.is_dir() else shutil.copy)(source, fragments / source.name)
    return build_spec(spec_path=None, fragments_dir=fragments, patches_dir=resource_dir("patches"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server(uvicorn.Server):
    """uvicorn's server, remembering the event loop it serves on (see :func:`hold_instances`)."""

    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)


class LiveServer:
    def __init__(self, settings: Settings, built: BuiltSpec | None = None, backends=None) -> None:
        self.settings = settings
        self.app = create_app(settings, built, backends)
        self.server = _Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self.server.loop is not None, "the server is not running"
        return self.server.loop

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
def gemma_server(built: BuiltSpec, directory: Path, *shipped: str) -> Iterator[LiveServer]:
    """A live server with the Gemma 3 270M example registrations (chat, completions, Responses)
    and the ``shipped`` configs (file names in ``configs/``)."""
    import shutil

    shutil.copy(REPO / "configs" / "examples" / "gemma3-270m.yaml", directory)
    for name in shipped:
        shutil.copy(resource_dir("configs") / name, directory)
    with live_server(built, configs_dir=directory) as live:
        yield live


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


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` every 10 ms until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def active_generations(live: LiveServer) -> int:
    with live.http() as http:
        return http.get("/readyz").json()["active_generations"]


def model_pool(live: LiveServer, operation_id: str, model: str) -> ModelPool:
    runtime = live.app.runtime
    return runtime.pool(runtime.registrations.lookup(operation_id, model))


@contextlib.contextmanager
def hold_instances(live: LiveServer, operation_id: str, model: str, count: int | None = None) -> Iterator[ModelPool]:
    """Hold ``count`` (default: all) instances of the model's pool, leased inside the server's
    event loop as a request would (loading the model first if need be), until the block ends;
    yields the pool."""
    pool = model_pool(live, operation_id, model)
    count = pool.size if count is None else count
    held: concurrent.futures.Future[asyncio.Event] = concurrent.futures.Future()

    async def hold() -> None:
        release = asyncio.Event()
        async with contextlib.AsyncExitStack() as leases:
            for _ in range(count):
                await leases.enter_async_context(pool.acquire())
            held.set_result(release)
            await release.wait()

    holding = asyncio.run_coroutine_threadsafe(hold(), live.loop)
    concurrent.futures.wait([held, holding], timeout=120, return_when=concurrent.futures.FIRST_COMPLETED)
    if not held.done():
        if not holding.done():
            holding.cancel()
            raise AssertionError(f"could not hold {count} instances of {model}")
        holding.result()  # raises what went wrong
    try:
        yield pool
    finally:
        live.loop.call_soon_threadsafe(held.result().set)
        holding.result(timeout=60)


def check_full_queue(live: LiveServer, operation_id: str, path: str, body: dict) -> None:
    """With every instance of the model held and ``queue_size`` requests waiting, one more
    answers 429 with ``Retry-After`` in OpenAI's envelope; once the instances are free again,
    the waiting requests are served."""

    def post() -> httpx.Response:
        with httpx.Client(base_url=live.url, timeout=120) as http:
            return http.post(path, json=body)

    queue_size = live.settings.queue_size
    with concurrent.futures.ThreadPoolExecutor(queue_size) as threads:
        with hold_instances(live, operation_id, body["model"]) as pool:
            assert pool.busy == pool.size and pool.waiting == 0
            queued = [threads.submit(post) for _ in range(queue_size)]
            wait_until(lambda: pool.waiting == queue_size, f"{queue_size} requests wait for {body['model']}")
            with live.http() as http:
                limited = http.post(path, json=body)
            assert limited.status_code == 429, limited.text
            assert limited.headers["retry-after"] == "1"
            assert limited.headers["content-type"] == "application/json"
            error = limited.json()["error"]
            assert set(limited.json()) == {"error"} and set(error) == {"message", "type", "param", "code"}
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
            assert f"'{body['model']}' is busy" in error["message"]
            assert not any(future.done() for future in queued)  # still waiting, not refused
        for future in queued:
            served = future.result()
            assert served.status_code == 200, served.text
            if body.get("stream"):
                assert served.headers["content-type"].startswith("text/event-stream")
                assert served.text.rstrip().endswith("data: [DONE]") and '"error"' not in served.text
            else:
                assert served.json()["choices"]


@contextlib.contextmanager
def plain_request(live: LiveServer, path: str, body: dict) -> Iterator[socket.socket]:
    """A POST sent over a plain socket, which is closed (the client goes away, unanswered or
    mid-answer) when the block ends."""
    payload = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", live.settings.port), timeout=30) as sock:
        sock.sendall(head + payload)
        yield sock


@pytest.fixture(scope="session")
def built_spec() -> BuiltSpec:
    """The default patched document, built once (tests must not mutate it)."""
    return build_spec(spec_path=None, fragments_dir=resource_dir("spec"), patches_dir=resource_dir("patches"))


@pytest.fixture(scope="session")
def server(built_spec: BuiltSpec) -> Iterator[LiveServer]:
    with live_server(built_spec) as live:
        yield live


def nullable_as_json_schema(node):
    """``node`` (a part of an OpenAPI document) with OpenAPI 3.0's ``nullable: true``, which
    OpenAI's 3.1 document still mixes in, written as JSON Schema 2020-12: ``null`` joins the
    schema's explicit ``type`` (and its ``enum``, if any). As OpenAPI 3.0.3 says, ``nullable``
    beside no ``type`` allows nothing more. Written here, apart from the server's own code."""
    if isinstance(node, list):
        return [nullable_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: nullable_as_json_schema(value) for key, value in node.items()
           if not (key == "nullable" and isinstance(value, bool))}  # not a property named "nullable"
    if node.get("nullable") is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


class ResponseSchemas:
    """Validates response bodies and stream chunks against the document a live server serves
    (``GET /openapi.json``), with jsonschema's Draft 2020-12 validator and a ``referencing``
    registry holding the document: an oracle independent of the server's own validation code
    (``localai_runtime.spec.schemas``)."""

    URI = "urn:tests:served-openapi"

    def __init__(self, document: dict) -> None:
        self.document = document
        self._registry = Registry().with_resource(
            self.URI, DRAFT202012.create_resource(nullable_as_json_schema(document)))
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def served_by(cls, live: LiveServer, path: str = "/openapi.json") -> ResponseSchemas:
        with live.http() as http:
            response = http.get(path)
        assert response.status_code == 200, response.text[:500]
        return cls(response.json())

    def error(self, pointer: str, instance) -> str | None:
        """Why ``instance`` is not valid against the schema at ``pointer`` (a JSON Pointer into
        the document), or None."""
        validator = self._validators.get(pointer)
        if validator is None:
            reference = {"$ref": f"{self.URI}#{urllib.parse.quote(pointer, safe='/~')}"}
            validator = self._validators[pointer] = Draft202012Validator(reference, registry=self._registry)
        error = best_match(validator.iter_errors(instance))
        return None if error is None else f"{pointer}: {error.message} (at {error.json_path})"

    def check_at(self, pointer: str, body) -> None:
        message = self.error(pointer, body)
        assert message is None, f"{message}\n{json.dumps(body)[:2000]}"

    def check(self, component: str, body) -> None:
        self.check_at(f"/components/schemas/{component}", body)


@pytest.fixture(scope="session")
def response_schemas(server: LiveServer) -> ResponseSchemas:
    """Schemas of the document served by the session's live server (the one built from
    ``built_spec``, as the test modules' own servers are)."""
    return ResponseSchemas.served_by(server)
