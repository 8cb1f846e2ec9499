"""The model pool's loading contract, driven directly on an event loop with a backend whose
load the test holds and releases: waiting for a load takes a queue place, one load serves every
waiter (a failure answers them all at once), and nothing made by a load is ever leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from localai_runtime.backends import LocalSettings
from localai_runtime.errors import RateLimitError, ServiceUnavailableError
from localai_runtime.serving.pool import ModelPool
from localai_runtime.serving.registrations import Registration


class Instance:
    batching = False
    kv_usage = 0.0

    def __init__(self) -> None:
        self.closed = False

    def replicas(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


class HeldBackend:
    """Loads block until ``gate`` is set; ``fail`` makes them raise."""

    name = "held"
    settings_schema: dict = {}
    remote = False
    default_parallel = 1
    honoured: dict = {}

    def __init__(self, *, fail: bool = False) -> None:
        self.gate = threading.Event()
        self.fail = fail
        self.loads = 0
        self.made: list[Instance] = []

    def honoured_for(self, settings) -> dict:
        return self.honoured

    def check(self, settings, operations):
        return []

    def load(self, settings, operations=None) -> Instance:
        self.loads += 1
        assert self.gate.wait(30)
        if self.fail:
            raise RuntimeError("out of memory")
        instance = Instance()
        self.made.append(instance)
        return instance


def pool_for(backend: HeldBackend, executor: ThreadPoolExecutor, *, parallel: int = 1, queue_size: int = 1) -> ModelPool:
    registration = Registration(
        model="held", operations=frozenset({"createCompletion"}),
        settings=LocalSettings("held", None, {"backend": "held", "parallel": parallel}),
        defaults={}, overrides={}, unsupported_policy="error", unknown_policy="error",
        source=Path("held.yaml"), index=0, backend=backend)
    return ModelPool(registration, queue_size=queue_size, executor=executor)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(4) as pool:
        yield pool


async def _use(pool: ModelPool) -> Instance:
    async with pool.acquire() as lease:
        return lease.instance


async def _until(condition) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def test_requests_waiting_for_the_first_load_count_against_the_queue(executor):
    backend = HeldBackend()
    pool = pool_for(backend, executor, parallel=1, queue_size=1)

    async def scenario() -> None:
        first, second = asyncio.create_task(_use(pool)), asyncio.create_task(_use(pool))
        await _until(lambda: pool.waiting == 2)  # one for the instance being loaded, one queued
        with pytest.raises(RateLimitError) as raised:
            await _use(pool)
        assert raised.value.headers == {"Retry-After": "1"}
        backend.gate.set()
        assert await first is await second is backend.made[0]

    asyncio.run(scenario())
    assert backend.loads == 1


def test_a_failed_load_answers_every_waiter_once_and_a_later_request_tries_again(executor):
    backend = HeldBackend(fail=True)
    pool = pool_for(backend, executor, parallel=1, queue_size=4)

    async def scenario() -> None:
        waiters = [asyncio.create_task(_use(pool)) for _ in range(3)]
        await _until(lambda: pool.waiting == 3)
        backend.gate.set()
        results = await asyncio.gather(*waiters, return_exceptions=True)
        assert all(isinstance(r, ServiceUnavailableError) and "out of memory" in r.message for r in results)
        assert backend.loads == 1  # one load, its failure shared
        backend.fail = False
        assert await _use(pool) is backend.made[0]  # the next request loads again, and succeeds
        assert backend.loads == 2

    asyncio.run(scenario())


def test_a_request_cancelled_during_the_load_leaks_nothing(executor):
    backend = HeldBackend()
    pool = pool_for(backend, executor)

    async def scenario() -> None:
        waiter = asyncio.create_task(_use(pool))
        await _until(lambda: backend.loads == 1)
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        assert pool.waiting == 0
        backend.gate.set()
        await _until(lambda: pool.loaded)  # the load went on, for the next request
        assert await _use(pool) is backend.made[0]
        pool.close()

    asyncio.run(scenario())
    assert backend.loads == 1 and backend.made[0].closed


def test_an_instance_loaded_after_the_pool_closed_is_closed(executor):
    backend = HeldBackend()
    pool = pool_for(backend, executor)

    async def scenario() -> None:
        waiter = asyncio.create_task(_use(pool))
        await _until(lambda: backend.loads == 1)
        pool.close()  # shutdown while the model loads
        backend.gate.set()
        with pytest.raises((ServiceUnavailableError, asyncio.CancelledError)):
            await waiter
        await _until(lambda: bool(backend.made) and backend.made[0].closed)

    asyncio.run(scenario())


def test_a_reservation_is_taken_over_by_its_own_pool_only(executor):
    backend = HeldBackend()
    backend.gate.set()  # loads at once
    first, second = pool_for(backend, executor, queue_size=0), pool_for(backend, executor, queue_size=0)

    async def scenario() -> None:
        reservation = first.reserve()
        assert first.waiting == 1 and first.full  # its one place (the free instance) is taken before any await
        with pytest.raises(RateLimitError):
            first.reserve()
        async with second.acquire(reservation):  # a reload gave the registration another pool meanwhile
            assert first.waiting == 0 and second.waiting == 0
        taken = first.reserve()
        async with first.acquire(taken):
            assert first.waiting == 0 and not taken.held
        taken.release()  # taken over: giving it back again does nothing
        assert first.waiting == 0 and second.waiting == 0

    asyncio.run(scenario())
    first.close()
    second.close()
