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
    name: str | None = None
    strict: bool | None = None
    description: str | None = None

    @property
    def constrained(self) -> bool:
        return self.type != TEXT_TYPE

    def as_chat(self) -> dict[str, Any]:
        """The format as a chat request gives it (for an upstream engine)."""
        if self.type != JSON_SCHEMA:
            return {"type": self.type}
        given = {"name": self.name, "schema": self.schema, "strict": self.strict, "description": self.description}
        return {"type": JSON_SCHEMA, "json_schema": {key: value for key, value in given.items() if value is not None}}


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
    form = form or {}
    kind = form.get("type", TEXT_TYPE)
    if kind == TEXT_TYPE:
        return TEXT
    if kind != JSON_SCHEMA:
        return ResponseFormat(kind, param="text.format", schema_param="text.format.schema")
    return ResponseFormat(kind, form.get("schema"), "text.format", "text.format.schema", form.get("name"),
                          form.get("strict"), form.get("description"))
