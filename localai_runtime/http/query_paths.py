"""Paths whose key holds a query, as Anthropic's document writes its beta operations:
``POST /v1/messages?beta=true`` (``beta_messages_post``) beside ``POST /v1/messages``
(``messages_post``).

A router matches paths, never queries, so :class:`QueryPathMiddleware`, outside connexion's
routing, gives a request the path of the key it matches: ``POST /v1/messages?beta=true`` is
routed as the path ``/v1/messages?beta=true`` (which no request path can hold, ``?`` always
starting the query), and the pairs of the key leave its query string, so query validation sees
only what the operation declares. A request whose query lacks them takes the plain path's
operation, unless it has a header that a document says adds them (``header_queries``: the
anthropic SDKs send ``anthropic-beta`` without ``?beta=true``). A header alone never routes a
request to an operation this server does not serve: ``GET /v1/models`` with ``anthropic-beta``
stays the served ``GET /v1/models`` rather than the beta operation's 501 (an explicit
``?beta=true`` still asks for that operation, and gets its 501). The routed document puts
these paths first (``spec.build``), so that ``/v1/messages/batches/{id}`` never takes
``/v1/messages/batches/x?beta=true``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

_PARAMETER = re.compile(r"\{[^}]*\}")
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class _QueryPath:
    pattern: re.Pattern[str]
    pairs: frozenset[tuple[str, str]]
    key_query: str
    served: bool
    """Whether the operation at this key is implemented (a header alone only selects served ones)."""


def _compile(base: str) -> re.Pattern[str]:
    parts = _PARAMETER.split(base)
    return re.compile("^" + "[^/]+".join(re.escape(part) for part in parts) + "$")


def query_paths(paths: Mapping[str, Any], served: Callable[[str], bool]) -> dict[str, list[_QueryPath]]:
    """method -> the query-keyed paths it has, most pairs first; ``served`` tells, by
    operationId, which operations are implemented."""
    found: dict[str, list[_QueryPath]] = {}
    for key, item in paths.items():
        if "?" not in key or not isinstance(item, Mapping):
            continue
        base, _, query = key.partition("?")
        pattern, pairs = _compile(base), frozenset(parse_qsl(query, keep_blank_values=True))
        for method, operation in item.items():
            if method in _METHODS:
                identifier = operation.get("operationId", "") if isinstance(operation, Mapping) else ""
                entry = _QueryPath(pattern, pairs, query, served(identifier))
                found.setdefault(method.upper(), []).append(entry)
    for entries in found.values():
        entries.sort(key=lambda entry: -len(entry.pairs))
    return found


def _without(pairs: Iterable[tuple[str, str]], taken: frozenset[tuple[str, str]]) -> bytes:
    return urlencode([pair for pair in pairs if pair not in taken]).encode("latin-1")


class QueryPathMiddleware:
    def __init__(self, app: ASGIApp, *, paths: Mapping[str, Any], header_queries: Mapping[str, str],
                 served: Callable[[str], bool]) -> None:
        self.app = app
        self.paths = query_paths(paths, served)
        self.header_queries = {name.encode("latin-1"): tuple(parse_qsl(query))
                               for name, query in header_queries.items()}

    def _implied(self, scope: Scope) -> set[tuple[str, str]]:
        implied: set[tuple[str, str]] = set()
        if self.header_queries:
            for name, _ in scope.get("headers", ()):
                implied.update(self.header_queries.get(name.lower(), ()))
        return implied

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entries = self.paths.get(scope.get("method", "")) if scope["type"] == "http" else None
        query = scope.get("query_string", b"")
        implied = self._implied(scope) if entries else set()
        if entries and (query or implied):
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            asked = set(pairs)
            for entry in entries:
                if not entry.served and not entry.pairs <= asked:
                    continue  # only a header implies it: keep the served plain operation
                if entry.pairs <= asked | implied and entry.pattern.match(scope["path"]):
                    path = f"{scope['path']}?{entry.key_query}"
                    scope = {**scope, "path": path, "raw_path": path.encode(),
                             "query_string": _without(pairs, entry.pairs)}
                    break
        await self.app(scope, receive, send)
