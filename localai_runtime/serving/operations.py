"""The operations handlers call: a validated request body in, the OpenAI response out.

:func:`serve` finds the registration, applies the policy (nothing silently ignored) and hands
the prepared request to the operation's family: ``chat`` and ``completions`` through the shared
text path (``text``), ``embeddings`` and ``tokenize`` (tokenize, detokenize) on their own. Adding an
API format is a row in ``_TEXT``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import Response

from localai_runtime.serving import chat, completions, embeddings, text, tokenize, upstream
from localai_runtime.serving.policy import prepare
from localai_runtime.serving.runtime import Runtime
from localai_runtime.tools.request import tool_request

CHAT = "createChatCompletion"
COMPLETION = "createCompletion"
EMBEDDING = "createEmbedding"
TOKENIZE = tokenize.TOKENIZE
DETOKENIZE = tokenize.DETOKENIZE

_TEXT: Mapping[str, text.TextFormat] = {CHAT: chat.FORMAT, COMPLETION: completions.FORMAT}


async def serve(runtime: Runtime, operation_id: str, body: Mapping[str, Any], receive: Callable[[], Any]) -> Response:
    registration = runtime.lookup(operation_id, body.get("model"))
    prepared = prepare(operation_id, body, registration, runtime.schemas, validated=True)  # by the document
    if operation_id == CHAT:  # a mistake in tools or tool messages is a 400 before any wait
        prepared.tools = tool_request(prepared.request)
    if registration.remote:
        return await upstream.relay(runtime, operation_id, prepared, receive)
    if operation_id == EMBEDDING:
        return await embeddings.answer(runtime, prepared, receive)
    if operation_id in (TOKENIZE, DETOKENIZE):
        return await tokenize.answer(runtime, operation_id, prepared, receive)
    return await text.answer(runtime, _TEXT[operation_id], prepared, receive)
