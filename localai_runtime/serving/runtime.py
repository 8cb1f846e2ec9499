"""The per-server object handlers reach through the lifespan state.

A :class:`Runtime` holds what the app factory built: settings, the patched spec, the request
schemas, the registrations and their model pools (:class:`~.pools.Pools`), and swaps them for a
reloaded configuration. Handlers get it with :func:`current`; nothing lives in module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from connexion import context

from localai_runtime.access.keys import SCOPE_KEY, Key
from localai_runtime.backends.abstract import below_the_event_loop
from localai_runtime.errors import APIError, ModelNotFoundError, SpecError
from localai_runtime.observability.metrics import UNOBSERVED, Metrics, RequestMetrics, Unobserved
from localai_runtime.serving.generation import GenerationCounter
from localai_runtime.serving.pool import ModelPool
from localai_runtime.serving.pools import Pools
from localai_runtime.serving.registrations import Registration, Registrations
from localai_runtime.settings import Settings
from localai_runtime.spec.build import BuiltSpec
from localai_runtime.spec.request_schemas import RequestSchemas
from localai_runtime.store import StoreError

if TYPE_CHECKING:
    from localai_runtime.backends.openai_upstream.replicas import ReplicaSet
    from localai_runtime.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    spec: BuiltSpec
    schemas: RequestSchemas
    registrations: Registrations
    started_at: float = field(default_factory=time.time)
    ready: bool = False
    generations: GenerationCounter = field(default_factory=GenerationCounter)
    store: Store | None = None
    """The response store, open while the server runs (None with ``--no-store``)."""
    reloader: Any = None
    """The app that reloads the configuration (``http.reloading.ReloadingApp``), once served."""
    background: dict[str, tuple[asyncio.Task[None], threading.Event]] = field(default_factory=dict)
    """Background responses running now, by response id."""
    executor: ThreadPoolExecutor = field(init=False)
    metrics: Metrics | None = field(init=False)
    pools: Pools = field(init=False)

    def __post_init__(self) -> None:
        # One thread per model instance that can generate at once, so generations never wait
        # for threads (the event loop's default executor has min(32, cores + 4)).
        instances = sum(int(r.settings.get("parallel", 1)) for r in self.registrations.all if not r.remote)
        self.executor = ThreadPoolExecutor(
            max_workers=instances + 1, thread_name_prefix="inference", initializer=below_the_event_loop
        )
        self.metrics = Metrics(pools=self._pool_states, models=self._models,
                               upstreams=self._upstreams) if self.settings.metrics else None
        self.pools = Pools(executor=self.executor, queue_size=self.settings.queue_size, metrics=self.metrics,
                           max_loaded=self.settings.max_loaded_models)

    def lookup(self, operation_id: str, model: Any) -> Registration:
        """The registration for ``model``; a model outside the request's key scope is 404 exactly
        like an unknown one, so a key never learns what it may not use."""
        key = current_key()
        if key is not None and isinstance(model, str) and model and not key.allows_model(model):
            raise ModelNotFoundError(model)
        return self.registrations.lookup(operation_id, model)

    def visible_models(self) -> list[str]:
        key = current_key()
        return [m for m in self.registrations.models() if key is None or key.allows_model(m)]

    def reconfigure(self, spec: BuiltSpec, schemas: RequestSchemas, registrations: Registrations) -> dict[str, Any]:
        """Take a new configuration at once (no await), keeping the pools of unchanged
        registrations (see ``serving.pools``); returns the labels added, changed, removed and
        unchanged, and the spec's patches."""
        diff = self.pools.diff(self.registrations, registrations)
        self.spec, self.schemas, self.registrations = spec, schemas, registrations
        self.pools.take(diff)
        return {**diff.labels(), "patches": list(spec.patches)}

    def count_reload(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.reloads.labels(outcome).inc()
            if outcome == "applied" and self.reloader is not None:
                self.metrics.configuration(self.reloader.state.digest)

    def _models(self) -> list[str]:
        """The registered models now (a reload changes them), for /metrics."""
        return self.registrations.models()

    def _pool_states(self) -> list[tuple[str, ModelPool]]:
        """Each pool with its model's name, for /metrics."""
        return [(pool.registration.model, pool) for pool in self.pools]

    def _upstreams(self) -> list[tuple[str, ReplicaSet]]:
        """The replica sets of loaded openai-upstream registrations, for /metrics."""
        found = [(pool.registration.model, _replicas(pool)) for pool in self.pools]
        return [(model, replicas) for model, replicas in found if replicas is not None]

    def upstream_status(self, registration: Registration) -> list[dict[str, Any]] | None:
        """Each replica's state of an openai-upstream registration while loaded (else None)."""
        replicas = _replicas(self.pools.get(registration))
        return None if replicas is None else replicas.status()

    def observe(self, model: str) -> RequestMetrics | Unobserved:
        """The metrics observer of one request for ``model``."""
        return self.metrics.request(model) if self.metrics is not None else UNOBSERVED

    def count_error(self, error: APIError) -> None:
        if self.metrics is not None:
            self.metrics.errors.labels(error.code or error.type).inc()

    def pool(self, registration: Registration) -> ModelPool:
        return self.pools.pool(registration)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        preloading = [asyncio.create_task(self._preload(registration)) for registration in self.registrations.all
                      if registration.settings.get("preload") and not registration.problem]
        try:  # the preloads run beside opening the store; a failure of either cancels them
            if self.settings.store:
                self.store = await _open_store(self.settings)
            purging = asyncio.create_task(self._purge()) if self.store and self.settings.retention_days else None
            unloading = asyncio.create_task(self.pools.lifecycle.unload_idle(), name="idle unload")
            watching = None
            if self.reloader is not None:
                if self.metrics is not None:
                    self.metrics.configuration(self.reloader.state.digest)
                if self.settings.watch or self.settings.reload_on_sighup:
                    watching = asyncio.create_task(self.reloader.watch(), name="configuration watch")
            for task in preloading:
                await task
        except BaseException:
            for task in preloading:
                task.cancel()
            raise
        # Compiling every request validator ahead of use, once the preloaded models have loaded
        # (beside them it took CPU from the load): ready does not wait for it.
        warming = asyncio.create_task(asyncio.to_thread(self.schemas.validators.warm))
        self.ready = True
        if self.settings.freeze_startup_objects:
            gc.freeze()
            gc.enable()
            logger.debug("%d objects moved to the permanent generation", gc.get_freeze_count())
        logger.info("ready")
        try:
            yield self
        finally:
            self.ready = False
            await asyncio.gather(warming, return_exceptions=True)
            for task, stop in list(self.background.values()):  # stored as cancelled
                stop.set()
                task.cancel()
            await asyncio.gather(*(task for task, _ in self.background.values()), return_exceptions=True)
            unloading.cancel()
            if watching is not None:
                watching.cancel()
            if purging is not None:
                purging.cancel()
            if self.store is not None:
                await self.store.close()
            # Instances are closed only once no generation thread uses them.
            await asyncio.to_thread(self.executor.shutdown, wait=True, cancel_futures=True)
            self.pools.close()

    async def _purge(self) -> None:
        """Delete what is older than the retention period: now, then every hour."""
        assert self.store is not None and self.settings.retention_days is not None
        while True:
            try:
                deleted = await self.store.purge(self.settings.retention_days * 86400)
                if deleted:
                    logger.info("retention: deleted %d stored rows older than %g days", deleted,
                                self.settings.retention_days)
            except StoreError as exc:
                logger.error("retention: %s", exc)
            await asyncio.sleep(3600)

    async def _preload(self, registration: Registration) -> None:
        try:
            await self.pool(registration).load()
        except APIError as exc:
            logger.error("preloading %s: %s", registration.label, exc.message)


async def _open_store(settings: Settings) -> Store:
    # SQLAlchemy is imported here, in a thread, while preloaded models load in others.
    Store = (await asyncio.to_thread(importlib.import_module, "localai_runtime.store.database")).Store  # noqa: N806
    url = settings.database_url or Store.sqlite_url(settings.data_dir)
    try:
        store = await Store.open(url)
    except StoreError as exc:
        logger.error("cannot open the response store: %s (use --data-dir, --database-url or --no-store)", exc)
        raise SpecError(f"cannot open the response store: {exc}") from exc
    logger.info("response store: %s", store.where)
    return store


def _replicas(pool: ModelPool | None) -> ReplicaSet | None:
    """The replica set an openai-upstream registration's loaded instances share (else None)."""
    instances = pool.instances if pool is not None else ()
    return instances[0].replicas() if instances else None


def current_key() -> Key | None:
    """The API key the current request was authorized with (None: no keys, or an open operation)."""
    return context.scope.get("extensions", {}).get(SCOPE_KEY)


def current_request() -> tuple[str | None, str | None]:
    """The operationId of the current request and the name of its API key, for a log line;
    ``(None, None)`` outside a request (connexion's context unbound)."""
    try:
        key = current_key()
        return context.operation.operation_id, key.name if key is not None else None
    except (LookupError, RuntimeError):
        return None, None


def current() -> Runtime:
    """The runtime of the server handling the current request."""
    return context.scope["state"]["runtime"]
