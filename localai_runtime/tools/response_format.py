"""What the answer must be, parsed once from the request: free text, any JSON object, or JSON
matching a schema (chat's ``response_format``, Responses' ``text.format``).

A backend that enforces it (llama-cpp, through a grammar) names :attr:`ResponseFormat.param` in
its errors, so a Responses client is told about ``text.format``, a chat client about
``response_format``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TEXT_TYPE, JSON_OBJECT, JSON_SCHEMA = "text", "json_object", "json_schema"


@dataclass(frozen=True)
class ResponseFormat:
    type: str = TEXT_TYPE
    schema: Mapping[str, Any] | None = None
    """The JSON Schema of a ``json_schema`` answer."""
    param: str = "response_format"
    """The request field it came from."""
    schema_param: str = "response_format.json_schema.schema"
    """The request field holding :attr:`schema`."""

    @property
    def constrained(self) -> bool:
        return self.type != TEXT_TYPE


TEXT = ResponseFormat()
"""Free text: a completion, or a chat request that asks for no format."""


def chat_response_format(request: Mapping[str, Any]) -> ResponseFormat:
    """A chat request's ``response_format`` (validated by the document)."""
    value = request.get("response_format") or {}
    kind = value.get("type", TEXT_TYPE)
    if kind == JSON_SCHEMA:
        return ResponseFormat(kind, (value.get("json_schema") or {}).get("schema", {}))
    return TEXT if kind == TEXT_TYPE else ResponseFormat(kind)


def text_format(form: Mapping[str, Any] | None) -> ResponseFormat:
    """A Responses request's ``text.format`` (validated by the document)."""
    kind = (form or {}).get("type", TEXT_TYPE)
    if kind == TEXT_TYPE:
        return TEXT
    schema = (form or {}).get("schema", {}) if kind == JSON_SCHEMA else None
    return ResponseFormat(kind, schema, "text.format", "text.format.schema")
