"""Small ASGI middlewares inserted into connexion's stack.

- :class:`BodyLimitMiddleware`: 413 for a body over the configured limit, counted as it
  arrives (a missing or lying ``Content-Length`` does not get around it).
- :class:`AuthMiddleware`: keys for every operation the spec secures, presented as its security
  schemes say (a bearer token, or an API key header such as Anthropic's ``x-api-key``),
  replacing connexion's ``SecurityMiddleware`` (which needs a token function per scheme and
  answers in problem+json).
- :class:`NotImplementedMiddleware`: 501 for operations without a handler, before request
  validation, so an unimplemented operation never answers 400 for a body it would not use.

Each raises :mod:`localai_runtime.errors` exceptions; connexion's exception middleware, which
wraps all three, turns them into OpenAI's envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from connexion.middleware.abstract import ROUTING_CONTEXT
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localai_runtime.access.keys import SCOPE_KEY, Key, KeyRing
from localai_runtime.errors import (
    AuthenticationError,
    NotImplementedAPIError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
)
from localai_runtime.spec.build import Operation

logger = logging.getLogger(__name__)


def operation_id(scope: Scope) -> str | None:
    """The operationId connexion's router matched, if any."""
    return scope.get("extensions", {}).get(ROUTING_CONTEXT, {}).get("operation_id")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"The request body is larger than this server's limit of {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()
        if declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
            scope, receive = await self._buffer_chunked(scope, receive)
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)

    async def _buffer_chunked(self, scope: Scope, receive: Receive) -> tuple[Scope, Receive]:
        """Read a body sent without Content-Length (chunked), within the limit, and replay it.

        connexion's validators take a missing Content-Length for an empty body; giving them
        the length makes chunked uploads work like any other.
        """
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return scope, receive  # disconnected: let the app see it
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                raise self._too_large()
            more = message.get("more_body", False)
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return scope, replay


BEARER = "authorization"
"""The header of an HTTP bearer scheme, among an operation's credential headers."""


class AuthMiddleware:
    """Requires a key for operations whose spec ``security`` asks for one, in a header of one of
    their schemes (``secured``: operationId -> those headers, :func:`credential_headers`), then
    the key's scope (403 for an operation outside it) and limits (429 over its rate or
    concurrency, with ``Retry-After`` and ``x-ratelimit-*``). The key is left in
    ``scope["extensions"]`` (``SCOPE_KEY``) for the model scope, which the handlers apply; a request
    counts against the key's concurrency until its answer, a stream included, has ended."""

    def __init__(self, app: ASGIApp, *, keys: KeyRing, secured: Mapping[str, tuple[str, ...]]) -> None:
        self.app = app
        self.keys = keys
        self.secured = dict(secured)

    def _key(self, scope: Scope, sources: tuple[str, ...]) -> Key:
        headers = Headers(scope=scope)
        presented = False
        for name in sources:
            value = headers.get(name)
            if value is None:
                continue
            presented = True
            if name == BEARER:
                scheme, _, value = value.partition(" ")
                if scheme.lower() != "bearer":
                    continue
            key = self.keys.match(value.strip()) if value.strip() else None
            if key is not None:
                return key
        asked = " or ".join("'Authorization: Bearer <key>'" if name == BEARER else f"'{name}: <key>'"
                            for name in sources)
        raise AuthenticationError(f"Missing API key: send {asked}" if not presented else "Incorrect API key provided",
                                  headers={"WWW-Authenticate": "Bearer"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        op_id = operation_id(scope)
        sources = self.secured.get(op_id or "") if scope["type"] == "http" and self.keys else None
        if sources is None or op_id is None:
            await self.app(scope, receive, send)
            return
        key = self._key(scope, sources)
        scope.setdefault("extensions", {})[SCOPE_KEY] = key  # its name is logged with a refusal too
        if not key.allows_operation(op_id):
            raise PermissionDeniedError(f"The API key '{key.name}' may not call {op_id}")
        over = key.limits.admit()
        if over is not None:
            limit, retry = over
            raise RateLimitError(f"The API key '{key.name}' is over its limit of {limit}; retry in {retry} s",
                                 headers={"Retry-After": str(retry), **key.limits.headers()})
        headers = [(name.encode(), value.encode()) for name, value in key.limits.headers().items()]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and headers:
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            key.limits.done()


class NotImplementedMiddleware:
    def __init__(self, app: ASGIApp, *, operations: Mapping[str, Operation], implemented: Collection[str]) -> None:
        self.app = app
        self.operations = operations
        self.implemented = frozenset(implemented)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        op_id = operation_id(scope)
        if op_id is not None and op_id not in self.implemented:
            raise not_implemented(self.operations[op_id])
        await self.app(scope, receive, send)


def not_implemented(operation: Operation) -> NotImplementedAPIError:
    return NotImplementedAPIError(
        f"{operation.operation_id} ({operation.method.upper()} {operation.path}) is not implemented by this server"
    )


def secured_operations(document: dict, operations: Mapping[str, Operation]) -> set[str]:
    """Operations whose effective ``security`` requires at least one scheme."""
    return set(credential_headers(document, operations))


def credential_headers(document: dict, operations: Mapping[str, Operation]) -> dict[str, tuple[str, ...]]:
    """Each secured operation (one whose effective ``security`` requires at least one scheme) and
    the headers its schemes take a key in: ``authorization`` for a bearer token, the header of an
    ``apiKey`` scheme (``x-api-key``); a scheme of any other kind is read as a bearer token."""
    default = document.get("security") or []
    schemes = (document.get("components") or {}).get("securitySchemes") or {}
    secured: dict[str, tuple[str, ...]] = {}
    for op_id, operation in operations.items():
        requirements = operation.spec.get("security", default)
        # An empty requirement object ({}) in the list makes the operation optionally open.
        if requirements and all(requirement for requirement in requirements):
            headers = [_header(schemes.get(name) or {}) for requirement in requirements for name in requirement]
            secured[op_id] = tuple(dict.fromkeys(headers))
    return secured


def _header(scheme: Mapping[str, object]) -> str:
    if scheme.get("type") == "apiKey" and scheme.get("in") == "header" and isinstance(scheme.get("name"), str):
        return str(scheme["name"]).lower()
    return BEARER
