"""Echo handler: returns the body connexion validated, so tests see what reached a handler."""

from __future__ import annotations

from typing import Any


async def echoValidated(body: dict[str, Any]) -> dict[str, Any]:  # noqa: N802 - operationId
    return {"received": body}
