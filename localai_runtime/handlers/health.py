"""The server's root, liveness and readiness, declared in ``spec/localai.yaml`` and open without an API key."""

from __future__ import annotations

import time
from typing import Any

from localai_runtime.serving import runtime


async def getRoot() -> dict[str, Any]:  # noqa: N802 - named after the operationId
    documents = runtime.current().spec.documents
    return {"status": "ok", "ui": "/ui", "documents": {
        document.name: next(iter(document.served)) for document in documents}}


async def getHealth() -> dict[str, Any]:  # noqa: N802 - named after the operationId
    return {"status": "ok"}


async def getReadiness() -> tuple[dict[str, Any], int]:  # noqa: N802
    current = runtime.current()
    body = {
        "status": "ready" if current.ready else "starting",
        "uptime_s": round(time.time() - current.started_at, 3),
        "operations": len(current.spec.operations),
        "active_generations": current.generations.active,
        "generations_total": current.generations.total,
        **(current.reloader.state.public() if current.reloader is not None else {}),
    }
    return body, 200 if current.ready else 503
