"""Conversations and their items (tag ``Conversations``)."""

from __future__ import annotations

from typing import Any

from localai_runtime.responses import conversations
from localai_runtime.responses.request import refuse_include
from localai_runtime.serving import runtime


async def createConversation(body: Any = None) -> dict[str, Any]:  # noqa: N802 - operationId
    return await conversations.create(runtime.current(), body)


async def getConversation(conversation_id: str) -> dict[str, Any]:  # noqa: N802 - operationId
    return await conversations.retrieve(runtime.current(), conversation_id)


async def updateConversation(conversation_id: str, body: Any) -> dict[str, Any]:  # noqa: N802
    return await conversations.update(runtime.current(), conversation_id, body)


async def deleteConversation(conversation_id: str) -> dict[str, Any]:  # noqa: N802 - operationId
    return await conversations.delete(runtime.current(), conversation_id)


async def createConversationItems(conversation_id: str, body: Any,  # noqa: N802 - operationId
                                  include: list[str] | None = None) -> dict[str, Any]:
    refuse_include(include)
    return await conversations.add_items(runtime.current(), conversation_id, body)


async def listConversationItems(conversation_id: str, limit: int = 20, order: str = "desc",  # noqa: N802
                                after: str | None = None, include: list[str] | None = None) -> dict[str, Any]:
    refuse_include(include)
    return await conversations.list_items(runtime.current(), conversation_id, after, max(1, min(limit, 100)), order)


async def getConversationItem(conversation_id: str, item_id: str,  # noqa: N802 - operationId
                              include: list[str] | None = None) -> dict[str, Any]:
    refuse_include(include)
    return await conversations.get_item(runtime.current(), conversation_id, item_id)


async def deleteConversationItem(conversation_id: str, item_id: str) -> dict[str, Any]:  # noqa: N802
    return await conversations.delete_item(runtime.current(), conversation_id, item_id)
