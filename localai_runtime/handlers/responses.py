"""The Responses API (tag ``Responses``)."""

from __future__ import annotations

from typing import Any

from connexion import context
from starlette.responses import Response

from localai_runtime.errors import UnsupportedParameterError
from localai_runtime.responses import service
from localai_runtime.responses.request import refuse_include
from localai_runtime.serving import runtime


async def createResponse(body: dict[str, Any]) -> Response:  # noqa: N802 - operationId
    return await service.SERVING.serve(runtime.current(), body, context.receive)


async def getResponse(response_id: str, include: list[str] | None = None, stream: bool = False,  # noqa: N802
                      starting_after: int | None = None, include_obfuscation: bool | None = None) -> dict[str, Any]:
    refuse_include(include)
    if stream or starting_after is not None:
        raise UnsupportedParameterError("resuming a response's stream is not supported; GET returns the response",
                                        param="stream" if stream else "starting_after")
    return await service.retrieve(runtime.current(), response_id)


async def deleteResponse(response_id: str) -> dict[str, Any]:  # noqa: N802 - operationId
    return await service.delete(runtime.current(), response_id)


async def cancelResponse(response_id: str) -> dict[str, Any]:  # noqa: N802 - operationId
    return await service.cancel(runtime.current(), response_id)


async def listInputItems(response_id: str, limit: int = 20, order: str = "desc",  # noqa: N802 - operationId
                         after: str | None = None, include: list[str] | None = None) -> dict[str, Any]:
    refuse_include(include)
    return await service.input_items(runtime.current(), response_id, after, max(1, min(limit, 100)), order)
