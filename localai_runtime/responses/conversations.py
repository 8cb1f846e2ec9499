"""Conversations and their items, kept in the store; createResponse reads and extends them."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from localai_runtime.errors import InvalidRequestError, NotFoundError
from localai_runtime.responses.items import check_calls, check_new_ids, input_items, new_id
from localai_runtime.responses.objects import page
from localai_runtime.responses.turn import in_store, require_store
from localai_runtime.serving.runtime import Runtime

if TYPE_CHECKING:
    from localai_runtime.store import Store


def _store(runtime: Runtime) -> Store:
    return require_store(runtime, "conversations need the response store, which is off on this server")


def _missing(conversation_id: str) -> NotFoundError:
    return NotFoundError(f"Conversation with id '{conversation_id}' not found.", param="conversation_id")


def _object(body: Any) -> Mapping[str, Any]:
    """The request body, which these operations' schemas do not require to be an object."""
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise InvalidRequestError("the request body must be a JSON object")
    return body


def _resource(found: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": found["id"], "object": "conversation", "created_at": int(found["created_at"]),
            "metadata": found.get("metadata") or {}}


async def create(runtime: Runtime, body: Any) -> dict[str, Any]:
    body = _object(body)
    items = input_items(body.get("items") or [], "items")
    check_calls([], items, "items")
    check_new_ids([], items, "items")
    conversation_id, now = new_id("conv"), time.time()
    await in_store(_store(runtime).create_conversation(conversation_id, now, body.get("metadata"), items))
    return _resource({"id": conversation_id, "created_at": now, "metadata": body.get("metadata")})


async def retrieve(runtime: Runtime, conversation_id: str) -> dict[str, Any]:
    found = await in_store(_store(runtime).get_conversation(conversation_id))
    if found is None:
        raise _missing(conversation_id)
    return _resource(found)


async def update(runtime: Runtime, conversation_id: str, body: Any) -> dict[str, Any]:
    body = _object(body)
    found = await in_store(_store(runtime).update_conversation(conversation_id, body.get("metadata")))
    if found is None:
        raise _missing(conversation_id)
    return _resource(found)


async def delete(runtime: Runtime, conversation_id: str) -> dict[str, Any]:
    if not await in_store(_store(runtime).delete_conversation(conversation_id)):
        raise _missing(conversation_id)
    return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}


async def add_items(runtime: Runtime, conversation_id: str, body: Any) -> dict[str, Any]:
    body = _object(body)
    items = input_items(body.get("items") or [], "items")
    existing = await in_store(_store(runtime).all_items(conversation_id))
    if existing is None:
        raise _missing(conversation_id)
    check_calls(existing, items, "items")
    check_new_ids(existing, items, "items")
    if not await in_store(_store(runtime).add_items(conversation_id, items)):
        raise _missing(conversation_id)
    return page(items, False)


async def list_items(runtime: Runtime, conversation_id: str, after: str | None, limit: int,
                     order: str) -> dict[str, Any]:
    found = await in_store(_store(runtime).list_items(conversation_id, after=after, limit=limit, order=order))
    if found is None:
        raise _missing(conversation_id)
    return page(*found)


async def get_item(runtime: Runtime, conversation_id: str, item_id: str) -> dict[str, Any]:
    item = await in_store(_store(runtime).get_item(conversation_id, item_id))
    if item is None:
        await retrieve(runtime, conversation_id)  # an unknown conversation is named as such
        raise NotFoundError(f"Item with id '{item_id}' not found.", param="item_id")
    return item


async def delete_item(runtime: Runtime, conversation_id: str, item_id: str) -> dict[str, Any]:
    if not await in_store(_store(runtime).delete_item(conversation_id, item_id)):
        await retrieve(runtime, conversation_id)
        raise NotFoundError(f"Item with id '{item_id}' not found.", param="item_id")
    return await retrieve(runtime, conversation_id)
