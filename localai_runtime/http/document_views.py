"""The patched document as Swagger UI and clients fetch it: ``/openapi.json``,
``/v1/openapi.json`` and ``/openapi.yaml``.

connexion would serve its own resolved copy instead, with every reference expanded (many times
the document's size) and serialized again on the event loop for every request, while the server
answers nobody. Here the
document is served as the pipeline built it, references as written; each format is rendered
once, when first asked for, in a worker thread, and served from memory afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["PATHS", "DocumentViews"]


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _yaml(document: dict[str, Any]) -> bytes:
    return yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True).encode()


_FORMATS: dict[str, tuple[Callable[[dict[str, Any]], bytes], str]] = {
    "json": (_json, "application/json"),
    "yaml": (_yaml, "application/yaml"),
}

#: path -> format
PATHS = {"/openapi.json": "json", "/v1/openapi.json": "json", "/openapi.yaml": "yaml"}


class DocumentViews:
    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document
        self._rendered: dict[str, asyncio.Future[bytes]] = {}

    async def render(self, kind: str) -> bytes:
        rendered = self._rendered.get(kind)
        if rendered is None:
            rendered = asyncio.ensure_future(asyncio.to_thread(_FORMATS[kind][0], self._document))
            self._rendered[kind] = rendered
        return await asyncio.shield(rendered)  # a client that leaves does not cancel the rendering

    def endpoint(self, kind: str) -> Callable[[Request], Awaitable[Response]]:
        async def serve(_request: Request) -> Response:
            return Response(await self.render(kind), media_type=_FORMATS[kind][1])

        return serve
