"""Legacy text completions (tag ``Completions``)."""

from __future__ import annotations

from typing import Any

from connexion import context
from starlette.responses import Response

from localai_runtime.serving import operations as serving
from localai_runtime.serving import runtime


async def createCompletion(body: dict[str, Any]) -> Response:  # noqa: N802 - operationId
    return await serving.COMPLETION.serve(runtime.current(), body, context.receive)
