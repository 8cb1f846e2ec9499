"""JSON Schema to GBNF, with strings that are valid JSON.

llama-cpp-python's converter writes string characters as ``[^"\\]``, which lets a model put raw
control characters (a newline, a tab) inside a JSON string: the arguments of a call, or a
structured answer, then fail to parse. llama.cpp's own converter, and the ``JSON_GBNF`` grammar
beside it, exclude them; this applies the same rule to every converted schema.

The converter also refuses a schema that constrains nothing but is not empty (only a
``description``, as Claude Code's Workflow tool gives its ``args``: "Unrecognized schema"), and
reads an empty one as an object; JSON Schema reads both as any value, so below the root both are
written as the list of every JSON type before conversion (:func:`any_value_explicit`): the same
meaning, in a form the converter takes. At the root such a schema stays an object (a call's
arguments, and a structured answer, are objects).
"""

from __future__ import annotations

import json
import re
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

_ANNOTATIONS = frozenset({"description", "title", "examples", "default", "deprecated", "readOnly", "writeOnly",
                          "$comment"})
_ANY = ["object", "array", "string", "number", "boolean", "null"]
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "contains")

_LOOSE_CHAR = re.compile(r'^char ::= \[\^"\\\\\]', re.MULTILINE)
_STRICT_CHAR = r'char ::= [^"\\\\\\x7F\\x00-\\x1F]'


def any_value_explicit(schema: Any) -> Any:
    """``schema`` with each subschema that allows any value (``{}``, or annotations alone) given
    the list of every JSON type."""
    if not isinstance(schema, dict):
        return schema
    if set(schema) <= _ANNOTATIONS:
        return {**schema, "type": list(_ANY)}
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: any_value_explicit(value) for name, value in out[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [any_value_explicit(value) for value in out[key]]
    for key in _SCHEMA_VALUES:
        if isinstance(out.get(key), dict):
            out[key] = any_value_explicit(out[key])
    return out


def schema_to_gbnf(schema_json: str) -> str:
    """The GBNF of a schema; at the root, one that constrains nothing is an object, as the
    converter (and a tool's ``parameters``, whose arguments are always an object) reads it."""
    schema = json.loads(schema_json)
    if isinstance(schema, dict) and set(schema) <= _ANNOTATIONS:
        schema = {**schema, "type": "object"}
    return _LOOSE_CHAR.sub(_STRICT_CHAR, json_schema_to_gbnf(json.dumps(any_value_explicit(schema))))
