"""OpenAPI 3.1 for connexion 3.3, through its documented extension points.

connexion 3.3 refuses ``openapi: 3.1.0`` (it validates documents against the 3.0 meta-schema)
and validates bodies and parameters with Draft 4 rules. Here:

- :class:`OpenAPI31Specification` is a ``Specification`` subclass that skips the 3.0
  meta-schema check (the spec pipeline has checked the document) and copies the document once
  instead of twice;
- :func:`validator_map` gives the ``validator_map`` for ``add_api``: body and parameter
  validators with JSON Schema 2020-12 semantics plus the 3.0 ``nullable`` keyword
  (:mod:`localai_runtime.spec.schemas`), raising OpenAI-shaped errors that name the field;
- :class:`OpenAPI31URIParser` is the ``uri_parser_class``: it copes with parameter schemas
  that have no single ``type`` (``anyOf``, ``type: [x, "null"]``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

from connexion.datastructures import MediaTypeDict
from connexion.spec import OpenAPISpecification
from connexion.uri_parsing import OpenAPIURIParser
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    ParameterValidator,
)
from starlette.datastructures import Headers

from localai_runtime.errors import InvalidRequestError, UnknownParameterError
from localai_runtime.http.dispatch import VALIDATED_BODY
from localai_runtime.http.middleware import operation_id
from localai_runtime.spec.files import copy_document
from localai_runtime.spec.request_schemas import RequestSchemas
from localai_runtime.spec.schema_errors import error_code, request_error
from localai_runtime.spec.schemas import SchemaCache, follow_refs

logger = logging.getLogger(__name__)

INVALID_JSON = "invalid_json"  # the code of a body that is not JSON text (or not in its encoding)

class OpenAPI31Specification(OpenAPISpecification):
    def __init__(self, raw_spec: dict[str, Any], *, base_uri: str = "") -> None:
        # The base class deep-copies the document twice, checks it against the OpenAPI 3.0
        # meta-schema (which rejects 3.1) and resolves references with copy.deepcopy, which
        # would take most of start-up for OpenAI's document. Here: one copy, and references
        # resolved in place by sharing the referenced objects.
        self._raw_spec = raw_spec
        self._set_defaults(raw_spec)
        self._spec = resolve_in_place(copy_document(raw_spec))
        self._base_uri = base_uri

    @classmethod
    def _validate_spec(cls, spec: dict[str, Any]) -> None:
        """Checked by the spec pipeline; the 3.0 meta-schema does not apply to 3.1."""

    def clone(self) -> OpenAPI31Specification:
        return type(self)(copy_document(self._raw_spec), base_uri=self._base_uri)


def resolve_in_place(document: dict[str, Any]) -> dict[str, Any]:
    """Replace every local ``$ref`` object by the object it points to (shared, not copied).

    The result is a graph (recursive schemas become cycles), as connexion's own resolver makes;
    sibling keys of a ``$ref`` are kept beside the target's keys.
    """

    def resolved(value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("$ref"), str) and value["$ref"].startswith("#/"):
            found = follow_refs(document, value)
            if len(value) == 1 or not isinstance(found, dict):
                return found
            return {**{k: v for k, v in value.items() if k != "$ref"}, **found}
        visit(value)
        return value

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                node[key] = resolved(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                node[index] = resolved(value)

    visit(document)
    return document


def _no_constant(name: str) -> float:
    """Python's json reads ``NaN`` and ``Infinity``; JSON has no such values."""
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(body: Any) -> None:
    """JSON can escape half of a UTF-16 pair alone (``"\\ud800"``): no character, and no model
    (nor a UTF-8 response) can take it. Paired escapes decode to one character and pass."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequestError(
            f"The request body is not valid JSON text: it holds an unpaired surrogate {ascii(exc.object[exc.start])}",
            code=INVALID_JSON,
        ) from exc
    except RecursionError as exc:
        raise InvalidRequestError("The request body is not valid JSON: it is nested too deeply",
                                  code=INVALID_JSON) from exc


def _primary_type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    candidates = kind if isinstance(kind, list) else [
        s.get("type") for s in schema.get("anyOf", []) + schema.get("oneOf", []) if isinstance(s, dict)
    ]
    return next((k for k in candidates if isinstance(k, str) and k != "null"), None)


class OpenAPI31URIParser(OpenAPIURIParser):
    """connexion's parser reads ``schema["type"]`` as one string; 3.1 schemas may not have one."""

    @property
    def param_schemas(self) -> dict[str, dict[str, Any]]:
        schemas = {}
        for name, definition in self.param_defns.items():
            schema = definition.get("schema", {})
            schemas[name] = {**schema, "type": _primary_type(schema)}
        return schemas


def _missing_body() -> InvalidRequestError:
    return InvalidRequestError("The request body is missing; this operation needs a JSON body", code="missing_body")


class _BodyValidator(JSONRequestBodyValidator):
    """JSON bodies parsed strictly and validated through the document (:class:`RequestSchemas`)
    where the operation has a request schema there; ``validator_map`` sets the two attributes."""

    requests: RequestSchemas
    cache: SchemaCache
    _request = None
    _body = None

    async def _parse(self, stream, scope):  # noqa: ANN001, ANN202 - connexion's signature
        raw = b"".join([chunk async for chunk in stream])
        if not raw.strip():
            return None
        try:
            body = json.loads(raw.decode(self._encoding), parse_constant=_no_constant, parse_float=_finite)
        except UnicodeDecodeError as exc:
            raise InvalidRequestError(
                f"The request body is not valid {self._encoding}: {exc.reason} at byte {exc.start}",
                code=INVALID_JSON,
            ) from exc
        except ValueError as exc:
            raise InvalidRequestError(f"The request body is not valid JSON: {exc}", code=INVALID_JSON) from exc
        except RecursionError as exc:  # json's decoder shares Python's recursion limit
            raise InvalidRequestError("The request body is not valid JSON: it is nested too deeply",
                                      code=INVALID_JSON) from exc
        if _SURROGATE_ESCAPE.search(raw):
            _refuse_lone_surrogates(body)
        op_id = operation_id(scope)
        self._request = self.requests.get(op_id) if op_id in self.requests.spec.operations else None
        self._body = body
        return body

    async def wrap_receive(self, receive, *, scope):  # noqa: ANN001, ANN202 - connexion's signature
        length = Headers(scope=scope).get("content-length", "0")
        if self._required and length.isdigit() and not int(length) and self._schema.get("default") is None:
            raise _missing_body()  # before connexion's own "RequestBody is required", which has no code
        receive, scope = await super().wrap_receive(receive, scope=scope)
        # Handed to the handler as it is (dispatch.HandlerMiddleware), not parsed again.
        scope.setdefault("extensions", {})[VALIDATED_BODY] = self._body
        if "content-type" not in Headers(scope=scope):
            # connexion validates a body sent without Content-Type as the operation's JSON
            # (its best guess); the handler must then read it as JSON too, not as bytes.
            scope = {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}
        return receive, scope

    def _validate(self, body: Any) -> None:
        if body is None:
            raise _missing_body()
        if self._request is not None:
            error = self.requests.first_error(self._request, body)
        else:
            error = self.cache.first_error(self._schema, body)
        if error is not None:
            raise request_error(error)


def _unbracketed(query: bytes, arrays: frozenset[str]) -> bytes:
    """``query`` with each ``name[]=value`` of an array parameter in ``arrays`` written
    ``name=value``: the official OpenAI SDKs spell arrays the brackets way (``include[]=a``), the
    document declares ``include``."""
    pairs = query.split(b"&")
    for index, pair in enumerate(pairs):
        key, sep, value = pair.partition(b"=")
        name = unquote_to_bytes(key)
        if sep and name.endswith(b"[]") and name[:-2].decode("latin-1") in arrays:
            pairs[index] = quote_from_bytes(name[:-2]).encode("ascii") + b"=" + value
    return b"&".join(pairs)


class _Parameters(ParameterValidator):
    """Parameters validated with connexion's resolved copies of their (small) schemas, unknown
    query parameters refused by name; ``validator_map`` sets ``cache``."""

    cache: SchemaCache

    def validate(self, scope):  # noqa: ANN001, ANN202 - connexion's signature
        # Nothing declared and no query string: nothing to check, and no request to build.
        if not self.parameters and not scope.get("query_string"):
            return
        query = scope.get("query_string", b"")
        if b"]=" in query.upper().replace(b"%5D", b"]"):  # name[]= (the SDKs' arrays): read, and passed on, as name=
            scope["query_string"] = _unbracketed(query, self._arrays())
        super().validate(scope)

    def _arrays(self) -> frozenset[str]:
        """The operation's array query parameters whose bracketed name it does not declare itself."""
        declared = {param["name"]: param for param in self.parameters.get("query", [])}
        return frozenset(name for name, param in declared.items()
                         if (param.get("schema") or {}).get("type") == "array" and f"{name}[]" not in declared)

    def validate_request(self, request):  # noqa: ANN001, ANN202 - connexion's signature
        if self.strict_validation:
            extra = sorted(self.validate_query_parameter_list(request, self.security_query_params))
            if extra:
                raise UnknownParameterError(
                    f"Unrecognized query parameter(s): {', '.join(extra)}", param=extra[0]
                )
        super().validate_request(request)

    @classmethod
    def validate_parameter(cls, parameter_type, value, param, param_name=None):  # noqa: ANN001, ANN206
        name = param.get("name", param_name)
        if value is None:
            if param.get("required"):
                raise InvalidRequestError(f"Missing required {parameter_type} parameter '{name}'", param=name,
                                          code="missing_required_parameter")
            return None
        schema = param.get("schema", param)
        error = cls.cache.first_error(schema, value)
        if error is not None:
            raise InvalidRequestError(
                f"Invalid {parameter_type} parameter '{name}': {error.message}", param=name, code=error_code(error)
            )
        return None


def validator_map(requests: RequestSchemas) -> dict[str, Any]:
    """The ``validator_map`` for connexion's ``add_api``.

    Bodies are validated through the document (:class:`RequestSchemas`), so that the compiled
    validator of :mod:`localai_runtime.spec.schemas` serves them; parameters, whose schemas are small,
    use connexion's resolved copies. Both share one cache of validators.
    """
    cache = SchemaCache()
    body = MediaTypeDict(dict(VALIDATOR_MAP["body"]))
    body["*/*json"] = type("BodyValidator", (_BodyValidator,), {"requests": requests, "cache": cache})
    return {"body": body, "parameter": type("Parameters", (_Parameters,), {"cache": cache})}
