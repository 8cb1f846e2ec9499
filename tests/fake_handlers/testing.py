"""Echo handler: returns the body connexion validated, so tests see what reached a handler."""

from __future__ import annotations

from typing import Any


async def echoValidated(body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - operationId
    return {"received": body}


async def echoItem(item_id: int, body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:  # noqa: N802
    return {"item_id": item_id, "received": body}, 201, {"x-echo": "item"}
