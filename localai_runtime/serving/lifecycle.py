"""Which models stay loaded: unloading after an idle period, and a cap on loaded models.

A registration's ``idle_unload_seconds`` unloads its model that long after its last request
ended. ``--max-loaded-models N`` caps the registrations with a loaded (or loading) model: a load
that needs room first unloads the least recently used idle model. A model with requests in
flight or queued is never unloaded, so a request that needs room waits (holding its queue place;
past the queue it is 429) until a model becomes idle. Models pinned with ``preload: true`` are
never unloaded; when the cap is taken by them, nothing can ever be freed and the request answers
503 at once, saying so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from localai_runtime.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from localai_runtime.serving.pool import ModelPool

logger = logging.getLogger(__name__)

IDLE_CHECK_MAX_S = 5.0
RECHECK_S = 1.0


class Lifecycle:
    def __init__(self, pools: Iterable[ModelPool], max_loaded: int | None) -> None:
        self._pools = pools
        """The server's pools (``serving.pools.Pools``), iterated afresh at each look."""
        self.max_loaded = max_loaded
        self._changed = asyncio.Condition()

    async def notify(self) -> None:
        """A model became idle or was unloaded: requests waiting for room look again."""
        async with self._changed:
            self._changed.notify_all()

    async def room_for(self, pool: ModelPool) -> None:
        """Return once ``pool`` may load: under the cap, or after unloading the least recently
        used idle model. Waits while every other model is in use; 503 if none can ever be freed."""
        if self.max_loaded is None or pool.registration.remote:
            return  # an upstream's registration holds no model here
        async with self._changed:
            while True:
                others = [p for p in self._pools if p is not pool and p.occupies_room]
                if len(others) < self.max_loaded:
                    pool.reserve_room()
                    return
                idle = sorted((p for p in others if p.idle and not p.pinned), key=lambda p: p.last_used)
                if idle:
                    closing = idle[0].unload("room")
                    if closing is not None:
                        await closing  # its memory is free before the next model loads
                    continue
                if all(p.pinned for p in others):
                    raise ServiceUnavailableError(
                        f"The model '{pool.registration.model}' cannot be loaded: --max-loaded-models "
                        f"{self.max_loaded} is taken by models pinned with preload: true",
                        param="model", code="model_unavailable")
                # Woken when a model goes idle or gives its room back; looks again each second
                # whatever happens, so a missed notification never leaves a request waiting.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), RECHECK_S)

    async def unload_idle(self) -> None:
        """Unload models idle for longer than their ``idle_unload_seconds``, until cancelled."""
        while True:
            now = time.monotonic()
            wait = IDLE_CHECK_MAX_S
            for pool in list(self._pools):
                limit = pool.idle_unload_s
                if limit is None or pool.pinned or not pool.idle:
                    continue
                remaining = pool.last_used + limit - now
                if remaining <= 0:
                    pool.unload("idle")
                    await self.notify()
                else:
                    wait = min(wait, remaining)
            # Woken when a model goes idle (a request ended), so its idle period is counted from
            # then, not from this loop's next look up to IDLE_CHECK_MAX_S later.
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), max(wait, 0.05))
