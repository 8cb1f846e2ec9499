"""This server's own operations (tag ``LocalAI``): what is registered, and how."""

from __future__ import annotations

from typing import Any

from localai_runtime.errors import InvalidRequestError, SpecError
from localai_runtime.serving import runtime


async def listRegistrations() -> dict[str, Any]:  # noqa: N802 - operationId
    current = runtime.current()
    data = []
    visible = set(current.visible_models())
    for registration in current.registrations.all:
        if registration.model not in visible:
            continue
        entry = registration.public()
        pool = current.pool(registration)
        entry["loaded"] = pool.loaded
        entry["busy_instances"] = pool.busy
        entry["state"] = pool.state
        entry["in_flight"] = pool.busy + pool.waiting
        entry["idle_since"] = pool.idle_since() if pool.idle else None
        if registration.remote:  # an upstream's replicas, while loaded
            entry["upstreams"] = current.upstream_status(registration)
        data.append(entry)
    return {"object": "list", "data": sorted(data, key=lambda e: (e["model"], e["source"]))}


async def reloadConfiguration() -> dict[str, Any]:  # noqa: N802 - operationId
    current = runtime.current()
    try:
        return await current.reloader.reload("the reload operation")
    except SpecError as exc:
        raise InvalidRequestError(f"The configuration was not reloaded (the last good one keeps serving): {exc}",
                                  code="invalid_configuration") from exc
