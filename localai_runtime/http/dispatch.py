"""Calling handlers after connexion has routed and validated a request.

connexion 3.3's ``AsyncOperation`` builds a new function decorator for every request it serves
(``inspect.signature`` of the handler, ``functools.wraps``, a URI parser, the body parsed again
from the replayed bytes), all of it the same for every request of an operation.
:class:`HandlerMiddleware`, the innermost middleware of the stack, calls handlers itself, with
arguments planned once per operation at start-up:

- ``body``: the JSON body that the request validator parsed and validated (see
  :data:`VALIDATED_BODY`), not parsed a second time;
- path parameters by name, as starlette's router converted them (string, integer or number);
- query parameters of simple types (string, integer, number, boolean, arrays of strings) by
  name, converted here after connexion validated them; an absent one takes the handler's default;
- header parameters (Anthropic's ``anthropic-version``, ``anthropic-beta``): validated by
  connexion, passed to no handler.

Return values follow connexion's conventions: a starlette ``Response``, or a JSON body,
optionally in a ``(body, status)`` or ``(body, status, headers)`` tuple. An operation whose
handler asks for anything else (header parameters, query objects, which connexion converts per
schema) is left to connexion's own decorator, which still works for every handler.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from localai_runtime.http.middleware import operation_id
from localai_runtime.spec.build import Operation
from localai_runtime.spec.schemas import follow_refs

__all__ = ["VALIDATED_BODY", "HandlerMiddleware", "plan_calls", "validated_body"]

logger = logging.getLogger(__name__)

VALIDATED_BODY = "localai_validated_body"
"""Key in ``scope["extensions"]`` under which the body validator leaves the parsed JSON body."""

_PATH_TYPES = frozenset({None, "string", "integer", "number"})  # what starlette's convertors give

Handler = Callable[..., Awaitable[Any]]


def validated_body(scope: Scope) -> Any:
    return scope.get("extensions", {}).get(VALIDATED_BODY)


def to_response(result: Any) -> Response:
    """A handler's return value as a response, the way connexion reads it."""
    if isinstance(result, Response):
        return result
    status, headers = 200, None
    if isinstance(result, tuple):
        if not 2 <= len(result) <= 3:
            raise TypeError(f"a handler returned a tuple of {len(result)} items; expected (body, status[, headers])")
        result, status, *rest = result
        headers = rest[0] if rest else None
    return JSONResponse(result, status_code=status, headers=headers)


class _Call:
    """One operation's handler with its argument plan: ``(argument, source)`` pairs."""

    def __init__(self, function: Handler, arguments: tuple[tuple[str, str], ...]) -> None:
        self.function = function
        self.arguments = arguments

    async def __call__(self, scope: Scope) -> Response:
        kwargs = {}
        query = None
        for name, source in self.arguments:
            if source == "body":
                kwargs[name] = validated_body(scope)
            elif source == "path":
                kwargs[name] = scope["path_params"][name]
            else:  # "query:<type>": validated by connexion already, converted here
                query = query if query is not None else parse_qs(scope.get("query_string", b"").decode("latin-1"))
                if name in query:
                    kwargs[name] = _QUERY_TYPES[source[len("query:"):]](query[name])
        return to_response(await self.function(**kwargs))


_QUERY_TYPES: dict[str, Callable[[list[str]], Any]] = {
    "string": lambda values: values[-1],
    "integer": lambda values: int(values[-1]),
    "number": lambda values: float(values[-1]),
    "boolean": lambda values: values[-1].lower() == "true",
    "array": lambda values: [part for value in values for part in value.split(",")],
}
"""Query parameter types planned here (arrays of strings, exploded or comma-separated)."""


def _parameters(document: Mapping[str, Any], operation: Operation) -> dict[str, tuple[str, Any]] | None:
    """name -> (where, schema type) of the operation's path and simple query parameters; None if
    it has other kinds (cookies, objects), which connexion's decorator converts."""
    declared = [
        *(document["paths"][operation.path].get("parameters") or []),
        *(operation.spec.get("parameters") or []),
    ]
    found: dict[str, tuple[str, Any]] = {}
    for parameter in declared:
        parameter = follow_refs(document, parameter)
        schema = follow_refs(document, parameter.get("schema") or {})
        kind = schema.get("type")
        if parameter.get("in") == "query" and kind in _QUERY_TYPES and parameter.get("style", "form") == "form":
            items = follow_refs(document, schema.get("items") or {})
            if kind == "array" and items.get("type", "string") != "string" and "enum" not in items:
                return None
            found[parameter["name"]] = ("query", kind)
        elif parameter.get("in") == "path":
            found[parameter["name"]] = ("path", kind)
        elif parameter.get("in") == "header":
            continue  # validated by connexion; a handler reads none (Anthropic's anthropic-version)
        else:
            return None
    return found


def _json_body_only(document: Mapping[str, Any], operation: Operation) -> bool:
    content = (follow_refs(document, operation.spec.get("requestBody") or {}).get("content") or {})
    return all(media_type == "application/json" for media_type in content)


def plan(document: Mapping[str, Any], operation: Operation, function: Handler) -> _Call | None:
    """The call plan for ``function``, or None where connexion's decorator must call it."""
    declared = _parameters(document, operation)
    if declared is None or not _json_body_only(document, operation) or not inspect.iscoroutinefunction(function):
        return None
    arguments = []
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            return None
        where, kind = declared.get(name, (None, None))
        if name == "body" and "requestBody" in operation.spec:
            arguments.append((name, "body"))
        elif where == "path" and kind in _PATH_TYPES:
            arguments.append((name, "path"))
        elif where == "query" and parameter.default is not parameter.empty:
            arguments.append((name, f"query:{kind}"))
        elif parameter.default is parameter.empty:
            return None
    return _Call(function, tuple(arguments))


def plan_calls(
    document: Mapping[str, Any], operations: Mapping[str, Operation], handlers: Mapping[str, Handler]
) -> dict[str, _Call]:
    calls = {}
    for op_id, function in handlers.items():
        call = plan(document, operations[op_id], function)
        if call is None:
            logger.info("%s: its handler is called through connexion's decorator", op_id)
        else:
            calls[op_id] = call
    return calls


class HandlerMiddleware:
    """Calls the handler of a routed, validated operation that has a call plan."""

    def __init__(self, app: ASGIApp, *, calls: Mapping[str, _Call]) -> None:
        self.app = app
        self.calls = calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = None
        if scope["type"] == "http" and (op_id := operation_id(scope)):
            call = self.calls.get(op_id)
        if call is None:
            await self.app(scope, receive, send)
            return
        response = await call(scope)
        await response(scope, receive, send)
