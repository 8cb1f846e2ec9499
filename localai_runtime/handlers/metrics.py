"""Prometheus metrics (tag ``Metrics``)."""

from __future__ import annotations

from starlette.responses import Response

from localai_runtime.errors import NotFoundError
from localai_runtime.observability.metrics import CONTENT_TYPE
from localai_runtime.serving import runtime


async def getMetrics() -> Response:  # noqa: N802 - operationId
    metrics = runtime.current().metrics
    if metrics is None:
        raise NotFoundError("This server keeps no metrics (started with --no-metrics).")
    return Response(metrics.exposition(), media_type=CONTENT_TYPE)
