"""Tokenize and detokenize (vLLM's ``/tokenize`` and ``/detokenize``): the leased instance's
vocabulary and chat template, used in a worker thread, never on the event loop."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from starlette.responses import JSONResponse, Response

from localai_runtime.backends import ModelInstance
from localai_runtime.errors import InvalidRequestError
from localai_runtime.serving.base import Serving
from localai_runtime.serving.generation import start_work, until_disconnected
from localai_runtime.serving.policy import Prepared
from localai_runtime.serving.registrations import Registration
from localai_runtime.serving.runtime import Runtime
from localai_runtime.tools.request import tool_request

CHAT_ONLY = {"tools": None, "add_generation_prompt": True}
"""Fields of tokenize's chat form, and the value that asks for nothing, which a prompt may have."""


class _VocabularyServing(Serving):
    """Short work on the leased instance, in a worker thread."""

    def work(self, instance: ModelInstance, prepared: Prepared) -> dict[str, Any]:
        raise NotImplementedError

    async def answer(self, runtime: Runtime, body: Mapping[str, Any], prepared: Prepared,
                     receive: Callable[[], Any]) -> Response:
        async def run() -> dict[str, Any]:
            async with runtime.pool(prepared.registration).acquire() as lease:
                return await start_work(asyncio.get_running_loop(), runtime.executor,
                                        functools.partial(self.work, lease.instance, prepared), None, lease)

        # A client that leaves while queued gives its place up (the work itself is short).
        answer = await until_disconnected(run(), receive, threading.Event())
        return JSONResponse(answer, headers=prepared.headers())


class TokenizeServing(_VocabularyServing):
    """A prompt's tokens, or a conversation's rendered as chat renders it (its tools parsed as chat
    parses them, so a mistake is the same 400, before any wait)."""

    operation_id = "tokenize"

    def prepare(self, runtime: Runtime, body: Mapping[str, Any], registration: Registration) -> Prepared:
        prepared = super().prepare(runtime, body, registration)
        request = prepared.request
        if request.get("messages") is not None:
            return replace(prepared, tools=tool_request(request))
        for name, default in CHAT_ONLY.items():
            if request.get(name) not in (None, default, []):
                raise InvalidRequestError(f"'{name}' goes with 'messages', not with 'prompt'", param=name)
        return prepared

    def work(self, instance: ModelInstance, prepared: Prepared) -> dict[str, Any]:
        tokens, strings = instance.tokenize_request(prepared.request, prepared.tools)
        answer: dict[str, Any] = {"count": len(tokens), "max_model_len": instance.context_size, "tokens": tokens}
        if strings is not None:
            answer["token_strs"] = strings
        return answer


class DetokenizeServing(_VocabularyServing):
    operation_id = "detokenize"

    def work(self, instance: ModelInstance, prepared: Prepared) -> dict[str, Any]:
        return {"prompt": instance.detokenize(list(prepared.request["tokens"]))}
