"""Counting HTTP requests by operationId and status, for ``localai_http_requests_total``.

The outermost middleware: it sees every answer, including the 401, 404 and 413 that inner
middleware give. Requests that match no operation count as ``unmatched`` (a bounded label).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localai_runtime.http.middleware import operation_id
from localai_runtime.observability.metrics import Metrics


class HTTPMetricsMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # connexion's router works on a shallow copy of the scope: an extensions dict made
            # here is the one it writes the matched operationId into, which the metrics and the
            # error handler's log line read.
            scope.setdefault("extensions", {})
        if scope["type"] != "http" or self.metrics is None:
            await self.app(scope, receive, send)
            return
        status = 500  # unless an answer starts

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.metrics.http.labels(operation_id(scope) or "unmatched", str(status)).inc()
