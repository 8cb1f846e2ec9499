"""Per-API serving: how one operation turns a validated body into its response.

A handler calls its operation's :class:`Serving` object (``operations`` holds them; Responses has
its own), so the operation is chosen once, by the route. :meth:`Serving.serve` finds the
registration, prepares the request once (the policy, then what the API parses for the backend,
such as tools) and decides here, and only here, whether the model is served by a local instance
(:meth:`~Serving.answer`) or relayed to an upstream engine (:meth:`~Serving.relay`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from starlette.responses import Response

from localai_runtime.serving import upstream
from localai_runtime.serving.policy import Prepared, prepare
from localai_runtime.serving.registrations import Registration
from localai_runtime.serving.runtime import Runtime


class Serving:
    """One operation's serving; subclasses override the hooks."""

    operation_id: str
    validated: ClassVar[bool] = True
    """The document validated the body on arrival (else the policy validates it)."""

    async def serve(self, runtime: Runtime, body: Mapping[str, Any], receive: Callable[[], Any]) -> Response:
        body = self.normalise(body)
        registration = runtime.lookup(self.operation_id, body.get("model"))
        prepared = self.prepare(runtime, body, registration)
        if registration.remote:
            return await self.relay(runtime, body, prepared, receive)
        return await self.answer(runtime, body, prepared, receive)

    def normalise(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """The body as the policy weighs it."""
        return body

    def prepare(self, runtime: Runtime, body: Mapping[str, Any], registration: Registration) -> Prepared:
        """The request admitted and merged; a mistake is an error before any wait."""
        return prepare(self.operation_id, body, registration, runtime.schemas, validated=self.validated)

    async def answer(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                     receive: Callable[[], Any]) -> Response:
        """The response from a local instance (``body``: the request as the client sent it)."""
        raise NotImplementedError

    async def relay(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                    receive: Callable[[], Any]) -> Response:
        """The response from the registration's upstream engine."""
        return await upstream.relay(runtime, self.operation_id, prepared, receive)
