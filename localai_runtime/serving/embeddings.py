"""Embeddings: vectors from the leased instance, as floats or base64 little-endian float32."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from localai_runtime.errors import InvalidRequestError
from localai_runtime.serving.base import Serving
from localai_runtime.serving.generation import start_work, until_disconnected
from localai_runtime.serving.policy import Prepared
from localai_runtime.serving.runtime import Runtime
from localai_runtime.serving.vectors import encode


class EmbeddingServing(Serving):
    operation_id = "createEmbedding"

    async def answer(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                     receive: Callable[[], Any]) -> Response:
        return await _answer(runtime, prepared, receive)


async def _answer(runtime: Runtime, prepared: Prepared, receive: Callable[[], Any]) -> Response:
    request = prepared.request
    inputs = request["input"]
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    if not inputs:
        raise InvalidRequestError("'input' must not be empty", param="input")

    observer = runtime.observe(prepared.registration.model)

    async def embed() -> tuple[list[list[float]], int]:
        async with runtime.pool(prepared.registration).acquire() as lease:
            observer.admitted()
            return await start_work(asyncio.get_running_loop(), runtime.executor,
                                    functools.partial(lease.instance.embed, list(inputs)), None, lease)

    # A client that leaves while queued gives its place up (the embedding itself is not interruptible).
    vectors, tokens = await until_disconnected(embed(), receive, threading.Event())
    observer.finished("stop", tokens, 0)
    encoding = request.get("encoding_format") or "float"
    data = [
        {"object": "embedding", "index": index, "embedding": encode(list(vector), encoding)}
        for index, vector in enumerate(vectors)
    ]
    body = {"object": "list", "data": data, "model": prepared.registration.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    return JSONResponse(body, headers=prepared.headers())
