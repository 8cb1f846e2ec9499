"""The server's model pools, one per registration, and what a new configuration keeps of them.

:class:`Pools` owns the pools (made on a registration's first use) and the :class:`Lifecycle`
that unloads their models. On a reload, a registration whose model, backend, model file and local
settings are unchanged keeps its pool (and so its loaded model), taking the new defaults,
overrides and policy. A changed or removed one keeps its old pool for the requests already on it:
the pool closes once they have all finished, and a changed registration loads anew on its next
request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from localai_runtime.observability.metrics import Metrics
from localai_runtime.serving.lifecycle import Lifecycle
from localai_runtime.serving.pool import ModelPool
from localai_runtime.serving.registrations import Registration, Registrations

logger = logging.getLogger(__name__)
DRAIN_CHECK_S = 0.2


@dataclass(frozen=True)
class Diff:
    """What new registrations change: the labels of each kind (sorted), the pools that go on
    serving (with their new registration) and those that drain."""

    added: list[str]
    changed: list[str]
    removed: list[str]
    unchanged: list[str]
    kept: list[tuple[Registration, ModelPool]]
    draining: list[ModelPool]

    def labels(self) -> dict[str, list[str]]:
        return {"added": self.added, "changed": self.changed, "removed": self.removed, "unchanged": self.unchanged}


class Pools:
    """The model pool of each registration in use, by registration."""

    def __init__(self, *, executor: Executor, queue_size: int, metrics: Metrics | None,
                 max_loaded: int | None) -> None:
        self._executor = executor
        self._queue_size = queue_size
        self._metrics = metrics
        self._pools: dict[int, ModelPool] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self.lifecycle = Lifecycle(self, max_loaded)

    def __iter__(self) -> Iterator[ModelPool]:
        """The pools now (a copy: a pool made meanwhile does not disturb the iteration)."""
        return iter(list(self._pools.values()))

    def get(self, registration: Registration) -> ModelPool | None:
        """The registration's pool, if it was used (None: never, so nothing is loaded)."""
        return self._pools.get(id(registration))

    def pool(self, registration: Registration) -> ModelPool:
        """The registration's pool, made on first use (its model loads on first acquire)."""
        pool = self._pools.get(id(registration))
        if pool is None:
            pool = self._pools[id(registration)] = ModelPool(
                registration, queue_size=self._queue_size, executor=self._executor, metrics=self._metrics,
                lifecycle=self.lifecycle)
        return pool

    def diff(self, old: Registrations, new: Registrations) -> Diff:
        """What going from ``old`` to ``new`` changes, with the pools to keep; changes nothing."""
        pools = dict(self._pools)
        old_by_identity: dict[tuple[Any, ...], list[Registration]] = {}
        for registration in old.all:
            old_by_identity.setdefault(_identity(registration), []).append(registration)
        old_labels = {r.label for r in old.all}
        kept: list[tuple[Registration, ModelPool]] = []
        added, changed, unchanged = [], [], []
        for registration in new.all:
            same = old_by_identity.get(_identity(registration))
            previous = same.pop(0) if same else None
            if previous is not None and id(previous) in pools:
                kept.append((registration, pools.pop(id(previous))))
            if previous is not None:
                unchanged.append(registration.label)
            elif registration.label in old_labels:
                changed.append(registration.label)
            else:
                added.append(registration.label)
        labels = {r.label for r in new.all}
        removed = sorted(label for label in old_labels if label not in labels)
        return Diff(sorted(added), sorted(changed), removed, sorted(unchanged), kept, list(pools.values()))

    def take(self, diff: Diff) -> None:
        """Serve the new registrations (at once, no await): the kept pools under their new
        registration; the others close once the requests on them end."""
        self._pools = {}
        for registration, pool in diff.kept:
            pool.registration = registration
            self._pools[id(registration)] = pool
        for pool in diff.draining:
            task = asyncio.get_running_loop().create_task(_drain_and_close(pool))
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)

    def close(self) -> None:
        for pool in self:
            pool.close()


def _identity(registration: Registration) -> tuple[Any, ...]:
    return (registration.model, registration.settings.backend, str(registration.settings.model_file),
            repr(sorted(registration.settings.values.items())))


async def _drain_and_close(pool: ModelPool) -> None:
    while pool.busy or pool.waiting:
        await asyncio.sleep(DRAIN_CHECK_S)
    if pool.loaded:
        logger.info("closing %s: its registration was changed or removed", pool.registration.label)
    pool.close()
