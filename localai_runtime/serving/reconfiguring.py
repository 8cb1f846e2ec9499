"""Taking a new configuration while serving: which registrations are added, changed or removed.

A registration whose model, operations and local settings are unchanged keeps its pool (and so
its loaded model), taking the new defaults, overrides and policy. A changed or removed one keeps
its old pool for the requests already on it: the pool closes once they have all finished, and a
changed registration loads anew on its next request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from localai_runtime.serving.registrations import Registration, Registrations

if TYPE_CHECKING:
    from localai_runtime.serving.pool import ModelPool
    from localai_runtime.serving.runtime import Runtime

logger = logging.getLogger(__name__)
DRAIN_CHECK_S = 0.2


def _identity(registration: Registration) -> tuple[Any, ...]:
    return (registration.model, registration.settings.backend, str(registration.settings.model_file),
            repr(sorted(registration.settings.values.items())))


def reconfigure(runtime: Runtime, spec: Any, schemas: Any, registrations: Registrations) -> dict[str, Any]:
    """Swap ``runtime`` onto the new configuration at once (no await); returns the diff."""
    old_pools: dict[int, ModelPool] = dict(runtime._pools)
    old_by_identity = {}
    for registration in runtime.registrations.all:
        old_by_identity.setdefault(_identity(registration), []).append(registration)
    kept: dict[int, ModelPool] = {}
    added, changed, unchanged = [], [], []
    old_models = {r.label: r for r in runtime.registrations.all}
    for registration in registrations.all:
        same = old_by_identity.get(_identity(registration))
        previous = same.pop(0) if same else None
        if previous is not None and id(previous) in old_pools:
            pool = old_pools.pop(id(previous))
            pool.registration = registration
            kept[id(registration)] = pool
        if previous is not None:
            unchanged.append(registration.label)
        elif registration.label in old_models:
            changed.append(registration.label)
        else:
            added.append(registration.label)
    labels = {r.label for r in registrations.all}
    removed = sorted(label for label in old_models if label not in labels)
    runtime.spec, runtime.schemas, runtime.registrations = spec, schemas, registrations
    runtime._pools = kept
    for pool in old_pools.values():  # changed or removed: close once the requests on them end
        task = asyncio.get_running_loop().create_task(_drain_and_close(pool))
        runtime.draining.add(task)
        task.add_done_callback(runtime.draining.discard)
    return {"added": sorted(added), "changed": sorted(changed), "removed": removed,
            "unchanged": sorted(unchanged), "patches": list(spec.patches)}


async def _drain_and_close(pool: ModelPool) -> None:
    while pool.busy or pool.waiting:
        await asyncio.sleep(DRAIN_CHECK_S)
    if pool.loaded:
        logger.info("closing %s: its registration was changed or removed", pool.registration.label)
    pool.close()
