"""Model instances per registration: lazy loading, generations at once, a bounded queue.

A registration's instances load on first use (or at start-up with ``preload: true``), once,
in a worker thread, shared by every request for it. ``parallel: N`` runs N generations at once:
an instance that batches (``batching``: the llama-cpp engine's N slots) is loaded once and lent
N times, any other is loaded N times; up to ``queue_size`` more requests wait for one, and past
that a request answers 429 with ``Retry-After``. A model that fails to load answers 503 naming the
model; the rest of the server keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import Executor, Future
from typing import Any

from localai_runtime.backends import ModelInstance
from localai_runtime.errors import ModelBusyError, RateLimitError, ServiceUnavailableError
from localai_runtime.observability.metrics import Metrics
from localai_runtime.serving.fields import backend_operations
from localai_runtime.serving.leases import Lease, Reservation
from localai_runtime.serving.lifecycle import Lifecycle
from localai_runtime.serving.registrations import Registration

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 16
RETRY_AFTER_S = 1


class ModelPool:
    def __init__(self, registration: Registration, *, queue_size: int = DEFAULT_QUEUE_SIZE, executor: Executor,
                 metrics: Metrics | None = None, lifecycle: Lifecycle | None = None) -> None:
        self.registration = registration
        self._metrics = metrics
        self._lifecycle = lifecycle
        self._executor = executor
        backend = registration.backend  # None: unavailable, refused when a request needs it
        self.size = int(registration.settings.get("parallel", 1 if backend is None else backend.default_parallel))
        self.queue_size = queue_size
        self._instances: list[ModelInstance] = []
        self._free: asyncio.Queue[ModelInstance] | None = None
        self._loading: asyncio.Task[None] | None = None
        self._closed = False
        self._waiting = 0
        self.busy = 0
        self.last_used = time.monotonic()
        """When the last request ended (or the model loaded)."""
        self._room = False  # counted against --max-loaded-models
        self.pinned = bool(registration.settings.get("preload"))
        idle = registration.settings.get("idle_unload_seconds")
        self.idle_unload_s: float | None = float(idle) if idle is not None else None

    @property
    def instances(self) -> tuple[ModelInstance, ...]:
        return tuple(self._instances)

    @property
    def loaded(self) -> bool:
        return bool(self._instances)

    @property
    def kv_usage(self) -> float:
        """The share of the KV cache running requests hold (0 while unloaded)."""
        return self._instances[0].kv_usage if self._instances else 0.0

    @property
    def idle(self) -> bool:
        """Loaded, and no request running or waiting for it."""
        return self.loaded and self.busy == 0 and self._waiting == 0 and self._free is not None

    def idle_since(self) -> float:
        """The wall-clock time (Unix seconds) the model has been idle since."""
        return time.time() - (time.monotonic() - self.last_used)

    @property
    def occupies_room(self) -> bool:
        return self._room

    def reserve_room(self) -> None:
        self._room = True

    @property
    def state(self) -> str:
        if self.loaded:
            return "loaded"
        return "loading" if self._loading is not None and not self._loading.done() else "unloaded"

    @property
    def waiting(self) -> int:
        """Requests admitted and waiting for an instance (or for the model to load)."""
        return self._waiting

    def _unavailable(self, why: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            f"The model '{self.registration.model}' is unavailable: {why}", param="model", code="model_unavailable"
        )

    async def load(self) -> None:
        """Load every instance once. Concurrent callers share one load and its outcome: a failed
        load answers all of them with the same 503 (the next request tries again). The load runs
        as a task of its own, so a caller that goes away neither cancels it nor leaks what it made."""
        if self._free is not None:
            return
        if self._closed:
            raise self._unavailable("the server is shutting down")
        if self.registration.problem or self.registration.backend is None:  # never takes a loaded-model place
            raise self._unavailable(self.registration.problem or "its backend is not available")
        if self._loading is None or self._loading.done():
            if self._lifecycle is not None and not self._room:
                await self._lifecycle.room_for(self)  # may wait for another model to become idle
            if self._free is not None:  # another request loaded it meanwhile
                return
            if self._loading is None or self._loading.done():
                self._loading = asyncio.create_task(self._load_all(), name=f"load {self.registration.label}")
                self._loading.add_done_callback(_retrieve)
        await asyncio.shield(self._loading)

    async def _load_all(self) -> None:
        registration = self.registration
        if registration.problem or registration.backend is None:
            raise self._unavailable(registration.problem or "its backend is not available")
        instances: list[ModelInstance] = []
        started = time.perf_counter()
        try:
            instances.append(await self._load_one())
            lent = [instances[0]] * self.size if instances[0].batching else None
            while lent is None and len(instances) < self.size:
                instances.append(await self._load_one())
        except Exception as exc:  # noqa: BLE001 - any load failure makes the model unavailable
            _close_all(instances)
            self._count_load("failed")
            self._room = False
            self._changed()
            logger.error("loading %s failed: %s", registration.label, exc)
            raise self._unavailable(f"loading it failed: {exc}") from exc
        except BaseException:  # cancelled (shutdown): nobody will use what was made
            _close_all(instances)
            self._room = False
            self._changed()
            raise
        if self._closed:
            _close_all(instances)
            raise self._unavailable("the server is shutting down")
        self._instances = instances
        self.last_used = time.monotonic()
        self._count_load("loaded", time.perf_counter() - started)
        self._free = asyncio.Queue()
        for instance in lent or instances:
            self._free.put_nowait(instance)
        logger.info("loaded %s (%d instance%s, %d at once)", registration.label, len(instances),
                    "" if len(instances) == 1 else "s", self.size)
        if self.idle:  # every request that waited for it went away meanwhile
            self._changed()

    async def _load_one(self) -> ModelInstance:
        registration = self.registration
        assert registration.backend is not None  # refused before any load
        loading = self._executor.submit(registration.backend.load, registration.settings,
                                        backend_operations(registration.operations))
        try:
            return await asyncio.wrap_future(loading)
        except asyncio.CancelledError:
            # The thread may still finish the instance: close it then instead of leaking it.
            loading.add_done_callback(_close_result)
            raise

    def _count_load(self, outcome: str, seconds: float | None = None) -> None:
        if self._metrics is not None:
            model = self.registration.model
            self._metrics.loads.labels(model, outcome).inc()
            if seconds is not None:
                self._metrics.load_seconds.labels(model).observe(seconds)

    @property
    def full(self) -> bool:
        """Another request would be refused (429, :meth:`busy_error`) now."""
        free = self.size if self._free is None else self._free.qsize()
        return self._waiting >= self.queue_size + free

    def busy_error(self) -> RateLimitError:
        return ModelBusyError(
            f"The model '{self.registration.model}' is busy: {self.busy} running and "
            f"{self._waiting} queued requests. Retry shortly.",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    def reserve(self) -> Reservation:
        """A queue place taken now for a request that acquires later (a background response), so
        that requests arriving together are never all accepted; 429 when the queue is full."""
        if self.full:
            raise self.busy_error()
        self._waiting += 1
        return Reservation(self, self._unreserve)

    def _unreserve(self) -> None:
        self._waiting -= 1
        if self.idle:
            self._changed()

    @contextlib.asynccontextmanager
    async def acquire(self, reservation: Reservation | None = None) -> AsyncIterator[Lease]:
        """An instance for one generation; 429 when ``queue_size`` requests already wait for one
        (requests waiting for the model to load count too), unless the request holds a
        ``reservation`` of a queue place, which this takes over."""
        if reservation is not None and reservation.take(self):
            pass  # its place is counted in _waiting already, given back below
        elif self.full:
            raise self.busy_error()
        else:
            self._waiting += 1
        try:
            await self.load()
            assert self._free is not None
            instance = await self._free.get()
        finally:
            self._waiting -= 1
            if self.idle:  # a waiter that left (a client went away) may leave the model idle
                self._changed()
        self.busy += 1
        lease = Lease(instance)
        try:
            yield lease
        finally:
            lease.release_when_idle(self._release)

    def _release(self, instance: ModelInstance) -> None:
        self.busy -= 1
        self.last_used = time.monotonic()
        if self._free is None:  # closed meanwhile
            instance.close()
            return
        self._free.put_nowait(instance)
        if self.idle:
            self._changed()

    def _changed(self) -> None:
        """Tell requests waiting for room that this model's use changed (it went idle, or its room
        was given back)."""
        if self._lifecycle is not None:
            _in_background(self._lifecycle.notify())

    def unload(self, reason: str) -> asyncio.Task[None] | None:
        """Unload an idle model; returns the task closing its instances in a worker thread (a load
        that needs the memory awaits it). The next request loads the model again."""
        if not self.idle:
            return None
        instances, self._instances, self._free, self._room = self._instances, [], None, False
        if self._metrics is not None:
            self._metrics.unloads.labels(self.registration.model, reason).inc()
        logger.info("unloading %s (%s)", self.registration.label, reason)
        return _in_background(asyncio.to_thread(_close_all, instances))

    def close(self) -> None:
        self._closed = True
        self._room = False
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
        if self._instances and self._metrics is not None:
            self._metrics.unloads.labels(self.registration.model, "shutdown").inc()
        _close_all(self._instances)
        self._instances = []
        self._free = None


_BACKGROUND: set[asyncio.Task[None]] = set()
"""Tasks started from callbacks (notifying, closing unloaded instances), kept until they end."""


def _in_background(work: Any) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


def _close_all(instances: list[ModelInstance]) -> None:
    for instance in instances:
        try:
            instance.close()
        except Exception:  # noqa: BLE001 - closing the others matters more
            logger.exception("closing a model instance failed")


def _close_result(loading: Future[ModelInstance]) -> None:
    if not loading.cancelled() and loading.exception() is None:
        _close_all([loading.result()])


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a failed load's exception as seen: its waiters may all have gone away."""
    if not task.cancelled():
        task.exception()
