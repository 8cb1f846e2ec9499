"""Chat completions: the request's tools parsed once, the ``chat.completion`` object and its stream chunks."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from localai_runtime.backends import ModelInstance
from localai_runtime.serving.policy import Prepared
from localai_runtime.serving.registrations import Registration
from localai_runtime.serving.runtime import Runtime
from localai_runtime.serving.text import Call, TextServing
from localai_runtime.tools.request import tool_request
from localai_runtime.tools.response_format import chat_response_format


def chat_logprobs(entries: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Chat's logprobs object from the backend's per-token entries (token, logprob, bytes, top_logprobs)."""
    return None if entries is None else {"content": entries, "refusal": None}


class ChatServing(TextServing):
    operation_id = "createChatCompletion"
    id_prefix = "chatcmpl"
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"

    def prepare(self, runtime: Runtime, body: Mapping[str, Any], registration: Registration) -> Prepared:
        prepared = super().prepare(runtime, body, registration)
        # a mistake in the tools is a 400 now
        return replace(prepared, tools=tool_request(prepared.request),
                       response_format=chat_response_format(prepared.request))

    def generator(self, instance: ModelInstance, prepared: Prepared):  # noqa: ANN201 - the instance's generator
        return functools.partial(instance.chat, tools=prepared.tools, response_format=prepared.response_format)

    def choice(self, index: int, text: str, finish: str, logprobs: list[dict[str, Any]] | None,
               calls: list[Call], legacy: bool) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if calls:
            message["content"] = text or None  # only the text before the calls, if any
            if legacy:
                message["function_call"] = {"name": calls[0].name, "arguments": calls[0].arguments}
            else:
                message["tool_calls"] = [{"id": c.id, "type": "function",
                                          "function": {"name": c.name, "arguments": c.arguments}} for c in calls]
        return {"index": index, "message": message, "finish_reason": finish, "logprobs": chat_logprobs(logprobs)}

    def chunk_choice(self, index: int, text: str | None, finish: str | None,
                     logprobs: list[dict[str, Any]] | None, offset: int,
                     calls: list[Call], legacy: bool) -> dict[str, Any]:
        delta: dict[str, Any] = {"content": text} if text else {}
        if calls and legacy:
            delta["function_call"] = {**({"name": calls[0].name} if calls[0].name else {}),
                                      "arguments": "".join(c.arguments for c in calls)}
        elif calls:
            delta["tool_calls"] = [_call_delta(c) for c in calls]
        return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": chat_logprobs(logprobs)}

    def opening_choices(self, n: int) -> list[dict[str, Any]]:
        return [{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None,
                 "logprobs": None} for index in range(n)]


def _call_delta(call: Call) -> dict[str, Any]:
    """A call's first delta carries its index, id, type and name; later ones argument text only."""
    if call.name is not None:
        return {"index": call.index, "id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}}
    return {"index": call.index, "function": {"arguments": call.arguments}}
