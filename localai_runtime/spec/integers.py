"""JSON numbers that the schema types as integers become Python ints.

JSON has one number type, and JSON Schema counts ``2.0`` as an integer, so ``"seed": 2.0`` or
``"n": 2.0`` is valid; Python's ``json`` module reads it as a float, which llama.cpp's C calls,
numpy's indices and ``range`` refuse. After validation, :func:`integral` turns such values into
ints wherever a schema admits an integer, following ``$ref``, ``allOf``/``anyOf``/``oneOf``,
object properties and array items.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from localai_runtime.spec.schemas import follow_refs

_MAX_DEPTH = 24


def _admits_integer(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def integral(value: Any, schema: Any, document: Mapping[str, Any], depth: int = 0) -> Any:
    """``value`` (already valid against ``schema``) with integer-typed floats made ints."""
    schema = follow_refs(document, schema)
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH or isinstance(value, str | bool) or value is None:
        return value
    for key in ("allOf", "anyOf", "oneOf"):
        for branch in schema.get(key) or ():
            value = integral(value, branch, document, depth + 1)
    if isinstance(value, float):
        return int(value) if value.is_integer() and _admits_integer(schema) else value
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [integral(item, schema["items"], document, depth + 1) for item in value]
    if isinstance(value, dict) and isinstance(schema.get("properties"), Mapping):
        properties = schema["properties"]
        return {key: integral(item, properties[key], document, depth + 1) if key in properties else item
                for key, item in value.items()}
    return value
