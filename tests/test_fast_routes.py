"""Route matching by index (``localai_runtime/http/fast_routes.py``) picks what starlette's scan picks."""

from __future__ import annotations

import asyncio

import pytest
from starlette.routing import Mount, Route, Router

from localai_runtime.http import fast_routes


def app_named(name: str, seen: list[str]):
    async def app(scope, receive, send) -> None:
        seen.append(name)

    return app


def routers(seen: list[str]) -> tuple[Router, Router]:
    """The same routes in a router routing by index and in one scanning as starlette does."""
    def routes() -> list:
        return [
            Route("/v1/responses/{response_id}", app_named("get-response", seen), methods=["GET"]),
            Route("/v1/responses", app_named("create-response", seen), methods=["POST"]),
            Route("/v1/responses/compact", app_named("compact", seen), methods=["POST"]),
            Route("/v1/models", app_named("models", seen), methods=["GET"]),
            Route("/v1/models/{model}", app_named("model", seen), methods=["GET", "DELETE"]),
            Route("/v1/responses", app_named("list-responses", seen), methods=["GET"]),
            Mount("/ui", app=app_named("ui", seen)),
        ]

    indexed = Router(routes=routes(), default=app_named("default", seen))
    scanning = Router(routes=routes(), default=app_named("default", seen))
    scanning.middleware_stack = fast_routes._original.__get__(scanning)
    return indexed, scanning


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/responses"), ("GET", "/v1/responses"), ("GET", "/v1/responses/resp_1"),
    ("POST", "/v1/responses/compact"), ("GET", "/v1/responses/compact"), ("DELETE", "/v1/responses/compact"),
    ("GET", "/v1/models"), ("GET", "/v1/models/demo"), ("DELETE", "/v1/models/demo"), ("PUT", "/v1/models"),
    ("GET", "/ui/index.html"), ("GET", "/nowhere"), ("GET", "/v1/models/"), ("GET", "/ui"),
    ("POST", "/v1/responses/"), ("GET", "/v1/responses/resp_1/"), ("GET", "/"),
])
def test_the_index_picks_the_route_a_scan_picks(method, path):
    fast_routes.install(ui_path="/ui")
    indexed_seen: list[str] = []
    scanning_seen: list[str] = []
    indexed, _ = routers(indexed_seen)
    _, scanning = routers(scanning_seen)
    sent: dict[str, list] = {"indexed": [], "scanning": []}

    async def call(router: Router, key: str) -> None:
        scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"",
                 "headers": [], "scheme": "http", "server": ("127.0.0.1", 80)}

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message) -> None:
            sent[key].append(message.get("status"))

        try:
            await router(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - a 405 may be raised; both must raise alike
            sent[key].append(type(exc).__name__)

    asyncio.run(call(indexed, "indexed"))
    asyncio.run(call(scanning, "scanning"))
    assert indexed_seen == scanning_seen
    assert sent["indexed"] == sent["scanning"]
    assert indexed_seen or sent["indexed"], "something answered"
    assert hasattr(indexed, "_localai_index") and not hasattr(scanning, "_localai_index")
