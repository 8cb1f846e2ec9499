"""Model instances per registration: lazy loading, one generation per instance, a bounded queue.

A registration's instances load on first use (or at start-up with ``preload: true``), once,
in a worker thread, shared by every request for it. ``parallel: N`` loads N instances so N
generations run at once; up to ``queue_size`` more requests wait for one, and past that a
request answers 429 with ``Retry-After``. A model that fails to load answers 503 naming the
model; the rest of the server keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any

from localai_runtime.backends import ModelInstance
from localai_runtime.errors import RateLimitError, ServiceUnavailableError
from localai_runtime.registrations import Registration

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 16
RETRY_AFTER_S = 1


class Lease:
    """An instance lent to one request. Work on it runs in threads registered with
    :meth:`track`; the instance goes back to the pool only once they have all finished, even
    when the request itself was cancelled first (a client that went away)."""

    def __init__(self, instance: ModelInstance) -> None:
        self.instance = instance
        self._pending: set[asyncio.Future[Any]] = set()

    def track(self, work: asyncio.Future[Any]) -> None:
        self._pending.add(work)
        work.add_done_callback(self._pending.discard)

    def release_when_idle(self, release: Callable[[ModelInstance], None]) -> None:
        pending = [work for work in self._pending if not work.done()]
        if not pending:
            release(self.instance)
            return
        remaining = len(pending)

        def done(_work: asyncio.Future[Any]) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0:
                release(self.instance)

        for work in pending:
            work.add_done_callback(done)


class ModelPool:
    def __init__(
        self, registration: Registration, *, queue_size: int = DEFAULT_QUEUE_SIZE, executor: Executor | None = None
    ) -> None:
        self.registration = registration
        self._executor = executor
        self.size = int(registration.settings.get("parallel", 1))
        self.queue_size = queue_size
        self._instances: list[ModelInstance] = []
        self._free: asyncio.Queue[ModelInstance] | None = None
        self._load_lock = asyncio.Lock()
        self._waiting = 0
        self.busy = 0

    @property
    def loaded(self) -> bool:
        return bool(self._instances)

    def _unavailable(self, why: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"The model '{self.registration.model}' is unavailable: {why}", param="model", code="model_unavailable"
        )

    async def load(self) -> None:
        """Load every instance once; concurrent callers wait for the same load."""
        async with self._load_lock:
            if self._free is not None:
                return
            registration = self.registration
            if registration.problem or registration.backend is None:
                raise self._unavailable(registration.problem or "its backend is not available")
            instances = []
            try:
                for _ in range(self.size):
                    loading = asyncio.get_running_loop().run_in_executor(
                        self._executor, registration.backend.load, registration.settings
                    )
                    instances.append(await loading)
            except Exception as exc:  # noqa: BLE001 - any load failure makes the model unavailable
                for instance in instances:
                    instance.close()
                logger.error("loading %s failed: %s", registration.label, exc)
                raise self._unavailable(f"loading it failed: {exc}") from exc
            self._instances = instances
            self._free = asyncio.Queue()
            for instance in instances:
                self._free.put_nowait(instance)
            logger.info("loaded %s (%d instance%s)", registration.label, self.size, "" if self.size == 1 else "s")

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Lease]:
        """An instance for one generation; 429 when ``queue_size`` requests already wait."""
        if self._free is None:
            await self.load()
        assert self._free is not None
        if self._free.empty() and self._waiting >= self.queue_size:
            raise RateLimitError(
                f"The model '{self.registration.model}' is busy: {self.size} running and "
                f"{self._waiting} queued requests. Retry shortly.",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        self._waiting += 1
        try:
            instance = await self._free.get()
        finally:
            self._waiting -= 1
        self.busy += 1
        lease = Lease(instance)
        try:
            yield lease
        finally:
            lease.release_when_idle(self._release)

    def _release(self, instance: ModelInstance) -> None:
        self.busy -= 1
        assert self._free is not None
        self._free.put_nowait(instance)

    def close(self) -> None:
        for instance in self._instances:
            instance.close()
        self._instances = []
        self._free = None
