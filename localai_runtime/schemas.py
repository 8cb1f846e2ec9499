"""JSON Schema validation with OpenAPI 3.1 semantics.

OpenAPI 3.1 schemas are JSON Schema 2020-12 (``type: [x, "null"]``, ``const``, ``prefixItems``,
``anyOf`` with ``{type: "null"}``). OpenAI's document still mixes in the 3.0 keyword
``nullable: true``, so the validator here is Draft 2020-12 extended to accept ``null`` wherever
a schema says ``nullable: true``.

No connexion import: the connexion glue and the registration checks both use this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import best_match
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_base = Draft202012Validator.VALIDATORS


def _nullable(keyword: str):  # noqa: ANN202 - a jsonschema keyword function
    check = _base[keyword]

    def validate(validator, value, instance, schema):  # noqa: ANN001, ANN202
        if instance is None and schema.get("nullable") is True:
            return
        yield from check(validator, value, instance, schema)

    return validate


OpenAPI31Validator = extend(
    Draft202012Validator,
    {"type": _nullable("type"), "enum": _nullable("enum"), "const": _nullable("const")},
)


DOCUMENT_URI = "urn:localai-runtime:openapi"


def document_registry(document: dict[str, Any]) -> Registry:
    """A registry holding ``document`` at :data:`DOCUMENT_URI`: validate ``{"$ref":
    DOCUMENT_URI + "#/pointer"}`` and references inside resolve against the document."""
    return Registry().with_resource(DOCUMENT_URI, Resource(contents=document, specification=DRAFT202012))


class SchemaCache:
    """One validator per schema object, built on first use."""

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry or Registry()
        self._validators: dict[int, tuple[Any, Any]] = {}

    def validator(self, schema: dict[str, Any]) -> Any:
        entry = self._validators.get(id(schema))
        if entry is None:
            entry = (schema, OpenAPI31Validator(schema, registry=self._registry))
            self._validators[id(schema)] = entry
        return entry[1]

    def first_error(self, schema: dict[str, Any], instance: Any) -> ValidationError | None:
        return best_match(self.validator(schema).iter_errors(instance))


def format_path(parts: Iterable[Any], prefix: str = "") -> str:
    """``("messages", 0, "role")`` -> ``messages[0].role``."""
    out = prefix
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def describe(error: ValidationError, prefix: str = "") -> tuple[str, str | None]:
    """A message naming the field, and the field's path (``None`` for the whole body)."""
    path = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = next((name for name in error.validator_value if name not in error.instance), None)
        if missing is not None:
            path.append(missing)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties") or {})
        extra = next((name for name in error.instance if name not in allowed), None)
        if extra is not None:
            path.append(extra)
    param = format_path(path, prefix) or None
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    if param:
        return f"Invalid value for '{param}': {message}", param
    return f"Invalid request body: {message}", None
