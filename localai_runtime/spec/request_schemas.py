"""What an operation's JSON request body may contain, read from the patched document.

Used to check registration defaults at start-up and to classify what a request sets: its
top-level field names (through ``$ref`` and ``allOf``), each field's documented ``default``,
and a validator for whole request bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from localai_runtime.errors import SpecError
from localai_runtime.spec.build import BuiltSpec
from localai_runtime.spec.schema_errors import best_error
from localai_runtime.spec.schemas import SchemaCache, document_ref, follow_refs

MISSING = object()


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _resolve(document: Mapping[str, Any], node: Any) -> Any:
    found = follow_refs(document, node)
    if isinstance(found, Mapping) and "$ref" in found:
        ref = found["$ref"]
        problem = "is not supported" if not str(ref).startswith("#/") else "is part of a reference cycle"
        raise SpecError(f"reference {ref} {problem}")
    return found


@dataclass(frozen=True)
class RequestSchema:
    operation_id: str
    name: str
    schema: Mapping[str, Any]
    fields: Mapping[str, Mapping[str, Any]]

    def default_of(self, field: str) -> Any:
        return self.fields.get(field, {}).get("default", MISSING)


class RequestSchemas:
    """Request schemas of the patched document's operations, with one shared validator cache."""

    def __init__(self, spec: BuiltSpec) -> None:
        self.spec = spec
        self.validators = SchemaCache(spec.document)
        self._cache: dict[str, RequestSchema | None] = {}

    def get(self, operation_id: str) -> RequestSchema | None:
        """The JSON request schema of an operation, or None if it takes no JSON body."""
        if operation_id not in self._cache:
            self._cache[operation_id] = self._build(operation_id)
        return self._cache[operation_id]

    def _build(self, operation_id: str) -> RequestSchema | None:
        document = self.spec.document
        op = self.spec.operation(operation_id)
        body = op.spec.get("requestBody")
        pointer = f"/paths/{_escape(op.path)}/{op.method}/requestBody"
        if isinstance(body, Mapping) and "$ref" in body:
            pointer = body["$ref"][1:]
        body = _resolve(document, body)
        media = (body or {}).get("content", {}).get("application/json")
        if not media or "schema" not in media:
            return None
        schema = media["schema"]
        name = schema.get("$ref", "").rsplit("/", 1)[-1] or f"{operation_id} request"
        fields: dict[str, Mapping[str, Any]] = {}
        self._collect(schema, fields, depth=0)
        # Validate through the document, so references inside resolve against it.
        located = document_ref(f"{pointer}/content/application~1json/schema")
        return RequestSchema(operation_id, name, located, fields)

    def _collect(self, node: Any, fields: dict[str, Mapping[str, Any]], depth: int) -> None:
        node = _resolve(self.spec.document, node)
        if not isinstance(node, Mapping) or depth > 16:
            return
        for name, prop in (node.get("properties") or {}).items():
            fields.setdefault(name, _resolve(self.spec.document, prop))
        for part in node.get("allOf") or []:
            self._collect(part, fields, depth + 1)

    def first_error(self, request: RequestSchema, body: Any):  # noqa: ANN201 - jsonschema error or None
        return self.validators.first_error(request.schema, body)

    def first_error_in_part(self, request: RequestSchema, part: Any):  # noqa: ANN201 - jsonschema error or None
        """The first error of a partial request (a registration's defaults): what it sets must
        be valid; the top-level fields it leaves out for the client to send are not errors.

        Registrations are checked while the server starts, so this uses the Python validator
        only: the compiled one needs a registry built from a copy of the whole document, which
        start-up builds after it is ready."""
        errors = self.validators.validator(request.schema).iter_errors(part)
        return best_error((e for e in errors if not _left_out(e)), self.spec.document)


def _left_out(error: Any) -> bool:
    """Whether a partial request fails only for leaving out top-level fields: ``required``, or a
    ``oneOf``/``anyOf`` with a branch that fails for that alone (tokenize's prompt or messages)."""
    if error.absolute_path:
        return False
    if error.validator == "required":
        return True
    if error.validator not in ("oneOf", "anyOf"):
        return False
    branches: dict[Any, list[Any]] = {}
    for inner in error.context or ():
        branches.setdefault(inner.relative_schema_path[0], []).append(inner)
    return any(all(_left_out(inner) for inner in errors) for errors in branches.values())
