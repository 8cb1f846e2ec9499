"""The patched documents as Swagger UI and clients fetch them: OpenAI's at ``/openapi.json``,
``/v1/openapi.json`` and ``/openapi.yaml``, every other vendor's at its own paths
(``/anthropic/openapi.json`` and ``.yaml``); Swagger UI at ``/ui`` has a selector between them.

connexion would serve its own resolved copy instead, with every reference expanded (many times
the document's size) and serialized again on the event loop for every request, while the server
answers nobody. Here the
document is served as the pipeline built it, references as written; each format is rendered
once, when first asked for, in a worker thread, and served from memory afterwards.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import Response

from localai_runtime.spec.build import PRIMARY_SERVED
from localai_runtime.spec.documents import VendorDocument
from localai_runtime.spec.status import mark_status

__all__ = ["PATHS", "DocumentViews", "add_document_views", "swagger_ui_config"]


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _yaml(document: dict[str, Any]) -> bytes:
    return yaml.dump(document, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=True).encode()


_FORMATS: dict[str, tuple[Callable[[dict[str, Any]], bytes], str]] = {
    "json": (_json, "application/json"),
    "yaml": (_yaml, "application/yaml"),
}

#: path -> format, of OpenAI's document
PATHS = PRIMARY_SERVED

_NOTES = {"anthropic": "Anthropic's error envelope (`api_error`)"}
"""How the 501 of an unimplemented operation is described, by error envelope (else OpenAI's)."""


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


def _json_path(document: VendorDocument) -> str:
    return next(path for path, kind in document.served.items() if kind == "json")


def swagger_ui_config(documents: Sequence[VendorDocument]) -> dict[str, Any]:
    """Swagger UI's configuration: a selector of the documents, OpenAI's shown first."""
    if len(documents) < 2:
        return {}
    urls = [{"url": _json_path(document), "name": document.document.get("info", {}).get("title") or document.name}
            for document in documents]
    return {"urls": urls, "urls.primaryName": urls[0]["name"]}


def add_document_views(app: Any, documents: Sequence[VendorDocument], implemented: Collection[str]) -> None:
    """Serve each document at its paths, marked with the operations that have handlers."""
    for document in documents:
        note = _NOTES.get(document.errors)
        views = DocumentViews(mark_status(document.document, implemented, **({"envelope": note} if note else {})))
        for path, kind in document.served.items():
            app.add_url_rule(path, f"document {path}", views.endpoint(kind))
