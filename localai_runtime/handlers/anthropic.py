"""Anthropic's Messages API (the untagged operations of Anthropic's document, tagged ``Anthropic``)."""

from __future__ import annotations

from typing import Any

from connexion import context
from starlette.responses import Response

from localai_runtime.messages.service import CountTokensServing, MessagesServing
from localai_runtime.serving import runtime

MESSAGES = MessagesServing("messages_post")
BETA_MESSAGES = MessagesServing("beta_messages_post")
COUNT = CountTokensServing("messages_count_tokens_post", "messages_post")
BETA_COUNT = CountTokensServing("beta_messages_count_tokens_post", "beta_messages_post")


async def messages_post(body: dict[str, Any]) -> Response:
    return await MESSAGES.serve(runtime.current(), body, context.receive)


async def beta_messages_post(body: dict[str, Any]) -> Response:
    return await BETA_MESSAGES.serve(runtime.current(), body, context.receive)


async def messages_count_tokens_post(body: dict[str, Any]) -> Response:
    return await COUNT.serve(runtime.current(), body, context.receive)


async def beta_messages_count_tokens_post(body: dict[str, Any]) -> Response:
    return await BETA_COUNT.serve(runtime.current(), body, context.receive)
