"""JSON Schema validation with OpenAPI 3.1 semantics.

OpenAPI 3.1 schemas are JSON Schema 2020-12 (``type: [x, "null"]``, ``const``, ``prefixItems``,
``anyOf`` with ``{type: "null"}``). OpenAI's document still mixes in the 3.0 keyword
``nullable: true``, so the validator here is Draft 2020-12 extended to accept ``null`` wherever
a schema says ``nullable: true``.

No connexion import: the connexion glue and the registration checks both use this module.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import jsonschema_rs
from jsonschema import Draft202012Validator, ValidationError
from jsonschema.validators import extend
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from localai_runtime.spec.schema_errors import best_error

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


def document_ref(pointer: str) -> dict[str, str]:
    """A schema that validates through the document at ``pointer`` (a JSON Pointer).

    The pointer is percent-encoded as a URI fragment: paths such as ``/v1/threads/{thread_id}``
    hold characters a URI may not."""
    return {"$ref": f"{DOCUMENT_URI}#{quote(pointer, safe='/~')}"}


MAX_REFERENCE_HOPS = 64


def follow_refs(document: Any, node: Any) -> Any:
    """``node`` with its chain of local ``$ref`` objects (``#/...``) followed inside
    ``document``; stops at anything else: a schema, an external reference, or after
    :data:`MAX_REFERENCE_HOPS` hops (a cycle), leaving the ``$ref`` object for the caller."""
    for _ in range(MAX_REFERENCE_HOPS):
        ref = node.get("$ref") if isinstance(node, Mapping) else None
        if not (isinstance(ref, str) and ref.startswith("#/")):
            return node
        node = document
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def document_registry(document: dict[str, Any]) -> Registry:
    """A registry holding ``document`` at :data:`DOCUMENT_URI`, for :func:`document_ref` schemas."""
    return Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(document))


def without_nullable(node: Any) -> Any:
    """A copy in which the 3.0 ``nullable: true`` is spelled the 2020-12 way (``null`` allowed)."""
    if isinstance(node, list):
        return [without_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: without_nullable(value) for key, value in node.items()}
    if out.pop("nullable", None) is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            out["type"] = [*kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
        if "const" in out:
            out["enum"] = [out.pop("const"), None]
    return out


class SchemaCache:
    """Validators built on first use, one per schema object.

    With a ``document``, schemas of the form ``document_ref(pointer)`` also get a compiled
    ``jsonschema-rs`` validator (Rust, far faster on the hot path): a valid instance is accepted
    on its word; for an invalid one the Python validator, the reference, finds and describes the
    error.
    """

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self._document = document
        self._registry = document_registry(document) if document is not None else Registry()
        self._validators: dict[int, tuple[Any, Any]] = {}
        self._fast: dict[str, Any] = {}
        self._fast_registry: Any = None
        self._fast_lock = threading.Lock()

    def validator(self, schema: Mapping[str, Any]) -> Any:
        entry = self._validators.get(id(schema))
        if entry is None:
            entry = (schema, OpenAPI31Validator(schema, registry=self._registry))
            self._validators[id(schema)] = entry
        return entry[1]

    def warm(self) -> None:
        """Build the compiled registry now (it takes a copy of the document)."""
        if self._document is not None and self._fast_registry is None:
            with self._fast_lock:
                if self._fast_registry is None:
                    self._fast_registry = jsonschema_rs.Registry([(DOCUMENT_URI, without_nullable(self._document))])

    def _fast_validator(self, schema: Mapping[str, Any]) -> Any:
        ref = schema.get("$ref") if len(schema) == 1 else None
        if self._document is None or not isinstance(ref, str) or not ref.startswith(DOCUMENT_URI):
            return None
        validator = self._fast.get(ref)
        if validator is None:
            self.warm()
            validator = jsonschema_rs.Draft202012Validator({"$ref": ref}, registry=self._fast_registry)
            self._fast[ref] = validator
        return validator

    def first_error(self, schema: Mapping[str, Any], instance: Any) -> ValidationError | None:
        fast = self._fast_validator(schema)
        if fast is not None and fast.is_valid(instance):
            return None
        return best_error(self.validator(schema).iter_errors(instance), self._document)
