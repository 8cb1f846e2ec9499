"""OpenAPI 3.1 validation semantics: JSON Schema 2020-12 plus the 3.0 ``nullable`` keyword."""

from __future__ import annotations

import pytest

from localai_runtime.spec.schema_errors import describe, error_code, format_path
from localai_runtime.spec.schemas import SchemaCache, document_ref

SCHEMA = {
    "type": "object",
    "required": ["model"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 128},
        "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
        "user": {"type": "string", "nullable": True},
        "mode": {"type": "string", "enum": ["a", "b"], "nullable": True},
        "object": {"type": "string", "const": "list"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]},
        "messages": {"type": "array", "items": {
            "type": "object", "required": ["role"],
            "properties": {"role": {"type": "string", "enum": ["user", "system"]}},
        }},
    },
}


@pytest.fixture()
def cache() -> SchemaCache:
    return SchemaCache()


@pytest.mark.parametrize("body", [
    {"model": "m"},
    {"model": "m", "n": None},
    {"model": "m", "n": 3},
    {"model": "m", "stop": None},
    {"model": "m", "stop": ["a", "b"]},
    {"model": "m", "user": None},
    {"model": "m", "mode": None},
    {"model": "m", "mode": "b"},
    {"model": "m", "object": "list"},
    {"model": "m", "temperature": 2},
    {"model": "m", "pair": [1, "x"]},
    {"model": "m", "messages": [{"role": "user"}]},
])
def test_valid(cache, body):
    assert cache.first_error(SCHEMA, body) is None


@pytest.mark.parametrize(("body", "param"), [
    ({}, "model"),
    ({"model": ""}, "model"),
    ({"model": "m", "n": "3"}, "n"),
    ({"model": "m", "n": 0}, "n"),
    ({"model": "m", "n": 129}, "n"),
    ({"model": "m", "stop": 5}, "stop"),
    ({"model": "m", "user": 5}, "user"),
    ({"model": "m", "mode": "c"}, "mode"),
    ({"model": "m", "object": "dict"}, "object"),
    ({"model": "m", "temperature": 2.5}, "temperature"),
    ({"model": "m", "pair": ["x", "y"]}, "pair[0]"),
    ({"model": "m", "messages": [{"role": "user"}, {"role": "robot"}]}, "messages[1].role"),
    ({"model": "m", "messages": [{}]}, "messages[0].role"),
])
def test_invalid_names_the_field(cache, body, param):
    error = cache.first_error(SCHEMA, body)
    assert error is not None
    message, got = describe(error)
    assert got == param
    assert f"'{param}'" in message


def test_validators_are_built_once_per_schema(cache):
    assert cache.validator(SCHEMA) is cache.validator(SCHEMA)


def test_format_path():
    assert format_path(["messages", 0, "content", 2, "text"]) == "messages[0].content[2].text"
    assert format_path([], "x-localai-extensions") == "x-localai-extensions"
    assert format_path(["top_k"], "x-localai-extensions") == "x-localai-extensions.top_k"


def test_document_ref_to_a_templated_path():
    # Paths such as /v1/threads/{thread_id} hold characters a URI fragment may not.
    document = {"paths": {"/v1/items/{item_id}": {"post": {"schema": {"type": "object", "required": ["a"]}}}}}
    cache = SchemaCache(document)
    schema = document_ref("/paths/~1v1~1items~1{item_id}/post/schema")
    assert cache.first_error(schema, {"a": 1}) is None
    assert cache.first_error(schema, {}).message == "'a' is a required property"


TOOLS = {
    "type": "object",
    "properties": {"tools": {"type": "array", "items": {"oneOf": [
        {"type": "object", "required": ["type", "name", "strict"], "properties": {
            "type": {"type": "string", "enum": ["function"]}, "name": {"type": "string"},
            "strict": {"anyOf": [{"type": "boolean"}, {"type": "null"}]}}},
        {"type": "object", "required": ["type", "ids"], "properties": {
            "type": {"const": "file_search"}, "ids": {"type": "array"}}},
        {"type": "string", "enum": ["auto"]},
    ]}}},
}


@pytest.mark.parametrize(("tool", "message", "param", "code"), [
    ({"type": "function", "name": "f"}, "Missing required parameter: 'tools[0].strict'.", "tools[0].strict",
     "missing_required_parameter"),
    ({"type": "function", "name": "f", "strict": "yes"},
     "Invalid type for 'tools[0].strict': expected a boolean or null, but got a string instead.", "tools[0].strict",
     "invalid_type"),
    ({"type": "file_search"}, "Missing required parameter: 'tools[0].ids'.", "tools[0].ids",
     "missing_required_parameter"),
    ({"type": "bogus", "name": "f"},
     "Invalid value for 'tools[0].type': 'bogus'. Supported values are: 'function', 'file_search'.", "tools[0].type",
     "invalid_value"),
    ({"name": "f"}, "Missing required parameter: 'tools[0].type'.", "tools[0].type", "missing_required_parameter"),
    ("manual", "Invalid value for 'tools[0]': 'manual'. Supported values are: 'auto'.", "tools[0]", "invalid_value"),
    (3, "Invalid type for 'tools[0]': expected an object or a string, but got an integer instead.", "tools[0]",
     "invalid_type"),
])
def test_a_failure_inside_a_choice_is_the_chosen_branch_s(cache, tool, message, param, code):
    """The branch the instance names by its discriminator (or JSON type) is the one reported."""
    error = cache.first_error(TOOLS, {"tools": [tool]})
    assert describe(error) == (message, param)
    assert error_code(error) == code


def test_a_choice_no_branch_explains_better_is_named_without_its_value(cache):
    schema = {"oneOf": [{"type": "object", "required": ["a"]}, {"type": "object", "required": ["b"]}]}
    error = cache.first_error(schema, {"c": "x" * 1000})
    assert describe(error) == ("Invalid value for the request body: it matches none of the 2 accepted forms.", None)
    assert error_code(error) == "invalid_value"


@pytest.mark.parametrize(("body", "code"), [
    ({"model": "m", "n": 0}, "integer_below_min_value"),
    ({"model": "m", "temperature": 2.5}, "decimal_above_max_value"),
    ({"model": ""}, "string_below_min_length"),
    ({}, "missing_required_parameter"),
    ({"model": "m", "mode": "c"}, "invalid_value"),
    ({"model": "m", "user": 5}, "invalid_type"),
])
def test_error_codes_follow_openai(cache, body, code):
    assert error_code(cache.first_error(SCHEMA, body)) == code
