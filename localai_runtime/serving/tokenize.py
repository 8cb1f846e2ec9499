"""Tokenize and detokenize (vLLM's ``/tokenize`` and ``/detokenize``): the leased instance's
vocabulary and chat template, used in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from localai_runtime.backends import ModelInstance
from localai_runtime.errors import InvalidRequestError
from localai_runtime.serving.base import Serving
from localai_runtime.serving.generation import start_work, until_disconnected
from localai_runtime.serving.policy import Prepared
from localai_runtime.serving.runtime import Runtime

TOKENIZE = "tokenize"
DETOKENIZE = "detokenize"

CHAT_ONLY = {"tools": None, "add_generation_prompt": True}
"""Fields of tokenize's chat form, and the value that asks for nothing, which a prompt may have."""


def _tokenize(instance: ModelInstance, request: Mapping[str, Any]) -> dict[str, Any]:
    tokens, strings = instance.tokenize_request(request)
    body: dict[str, Any] = {"count": len(tokens), "max_model_len": instance.context_size, "tokens": tokens}
    if strings is not None:
        body["token_strs"] = strings
    return body


def _detokenize(instance: ModelInstance, request: Mapping[str, Any]) -> dict[str, Any]:
    return {"prompt": instance.detokenize(list(request["tokens"]))}


class TokenizeServing(Serving):
    """``tokenize`` or ``detokenize``, one object for each."""

    def __init__(self, operation_id: str) -> None:
        self.operation_id = operation_id

    async def answer(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                     receive: Callable[[], Any]) -> Response:
        return await _answer(runtime, self.operation_id, prepared, receive)


async def _answer(runtime: Runtime, operation_id: str, prepared: Prepared, receive: Callable[[], Any]) -> Response:
    request = prepared.request
    if operation_id == TOKENIZE and request.get("messages") is None:
        for name, default in CHAT_ONLY.items():
            if request.get(name) not in (None, default, []):
                raise InvalidRequestError(f"'{name}' goes with 'messages', not with 'prompt'", param=name)
    work = _tokenize if operation_id == TOKENIZE else _detokenize

    async def run() -> dict[str, Any]:
        async with runtime.pool(prepared.registration).acquire() as lease:
            return await start_work(asyncio.get_running_loop(), runtime.executor,
                                    functools.partial(work, lease.instance, request), None, lease)

    # A client that leaves while queued gives its place up (the work itself is short).
    body = await until_disconnected(run(), receive, threading.Event())
    return JSONResponse(body, headers=prepared.headers())
