"""The registered model names (tag ``Models``): each name once, whatever it serves."""

from __future__ import annotations

from typing import Any

from localai_runtime.errors import ModelNotFoundError
from localai_runtime.serving import runtime

OWNER = "localai-runtime"


def _model(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": OWNER}


async def listModels() -> dict[str, Any]:  # noqa: N802 - operationId
    current = runtime.current()
    created = int(current.started_at)
    return {"object": "list", "data": [_model(name, created) for name in current.visible_models()]}


async def retrieveModel(model: str) -> dict[str, Any]:  # noqa: N802 - operationId
    current = runtime.current()
    if model not in current.visible_models():
        raise ModelNotFoundError(model)
    return _model(model, int(current.started_at))
