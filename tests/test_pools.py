"""The pools of a server across a reload: :meth:`Pools.diff` sorts the registrations and changes
nothing; :meth:`Pools.take` keeps the pool (and loaded model) of an unchanged registration and
closes the others once their requests end.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from localai_runtime.backends import LocalSettings
from localai_runtime.serving.pools import Pools
from localai_runtime.serving.registrations import Registration, Registrations
from tests.test_pool import HeldBackend


def registration(model: str, index: int, backend: HeldBackend, **values) -> Registration:
    return Registration(
        model=model, operations=frozenset({"createCompletion"}),
        settings=LocalSettings("held", None, {"backend": "held", **values}),
        defaults={}, overrides={}, unsupported_policy="error", unknown_policy="error",
        source=Path("held.yaml"), index=index, backend=backend)


def registrations(*items: Registration) -> Registrations:
    return Registrations({("createCompletion", r.model): r for r in items})


def test_an_unchanged_registration_keeps_its_loaded_pool_and_the_others_drain():
    backend = HeldBackend()
    backend.gate.set()
    kept, changed, removed = (registration("kept", 0, backend), registration("changed", 1, backend),
                              registration("removed", 2, backend))
    new_kept, new_changed, added = (registration("kept", 0, backend),
                                    registration("changed", 1, backend, threads=2), registration("added", 3, backend))
    old, new = registrations(kept, changed, removed), registrations(new_kept, new_changed, added)

    async def scenario(pools: Pools) -> None:
        for each in (kept, changed):
            await pools.pool(each).load()
        kept_pool, changed_pool = pools.get(kept), pools.get(changed)
        diff = pools.diff(old, new)
        assert diff.labels() == {"added": ["added (held.yaml#3)"], "changed": ["changed (held.yaml#1)"],
                                 "removed": ["removed (held.yaml#2)"], "unchanged": ["kept (held.yaml#0)"]}
        assert diff.kept == [(new_kept, kept_pool)] and diff.draining == [changed_pool]
        assert pools.get(kept) is kept_pool and kept_pool.registration is kept  # diff changes nothing
        pools.take(diff)
        assert pools.get(new_kept) is kept_pool and kept_pool.registration is new_kept and kept_pool.loaded
        assert pools.get(kept) is None and pools.get(new_changed) is None
        for _ in range(100):
            if not changed_pool.loaded:
                break
            await asyncio.sleep(0.01)
        assert not changed_pool.loaded and list(pools) == [kept_pool]
        pools.close()

    with ThreadPoolExecutor(2) as executor:
        asyncio.run(scenario(Pools(executor=executor, queue_size=1, metrics=None, max_loaded=None)))
    assert backend.loads == 2 and [i.closed for i in backend.made] == [True, True]
