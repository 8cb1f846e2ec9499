"""Hot reload: a new document, registrations and keys, swapped in whole or not at all.

:class:`ReloadingApp` is the ASGI app the server runs: it hands each request to the current
connexion app. :meth:`ReloadingApp.reload` (SIGHUP, a change in the watched configs, patches or
keys file, or the admin operation ``reloadConfiguration``) builds the next configuration off the
event loop and checks all of it; if anything fails, nothing changes, the last good configuration
keeps serving and the error is logged once. Otherwise the runtime takes the new registrations
(unchanged ones keep their loaded model, see ``Runtime.reconfigure``) and the next request goes
to the new app; requests in flight finish on what they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send

from localai_runtime.errors import SpecError
from localai_runtime.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class ReloadState:
    digest: str
    """sha256 of the files the active configuration was built from."""
    loaded_at: float
    failed_at: float | None = None
    error: str | None = None

    def public(self) -> dict[str, Any]:
        return {"config_hash": self.digest, "config_loaded_at": self.loaded_at,
                "last_reload_failed_at": self.failed_at, "last_reload_error": self.error}


def watched_paths(settings: Settings) -> list[Path]:
    return [path for path in (settings.configs_dir, settings.patches_dir, settings.keys_file) if path is not None]


def configuration_digest(settings: Settings) -> str:
    """A hash of every file the configuration is read from (registrations, patches, keys)."""
    digest = hashlib.sha256()
    for root in watched_paths(settings):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if path.exists():
                digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class ReloadingApp:
    """The server's ASGI app: lifespan goes to the first connexion app (it runs the runtime);
    requests go to the current one."""

    def __init__(self, first: Any, build: Callable[[], Any]) -> None:
        self.first = self.current = first
        self.runtime = first.runtime
        self._build = build
        self._lock = asyncio.Lock()
        settings = self.runtime.settings
        self.state = ReloadState(configuration_digest(settings), time.time())
        self.runtime.reloader = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.first if scope["type"] == "lifespan" else self.current)(scope, receive, send)

    async def reload(self, reason: str) -> dict[str, Any]:
        """Build, check and swap in the configuration on disk; the diff, or :class:`SpecError`
        (nothing changed) with every message."""
        async with self._lock:
            try:
                app = await asyncio.to_thread(self._build)
            except SpecError as exc:
                self.state.failed_at, self.state.error = time.time(), str(exc)
                self.runtime.count_reload("failed")
                logger.error("reload (%s) failed; the last good configuration keeps serving: %s", reason, exc)
                raise
            config = app.configuration
            diff = self.runtime.reconfigure(config.built, config.schemas, config.registrations)
            self.current = app
            self.state = ReloadState(await asyncio.to_thread(configuration_digest, self.runtime.settings), time.time())
            self.runtime.count_reload("applied")
            logger.info("reload (%s) applied: %s", reason, diff)
            return {**diff, "config_hash": self.state.digest}

    async def _reload_quietly(self, reason: str) -> None:
        with contextlib.suppress(SpecError):
            await self.reload(reason)

    async def watch(self) -> None:
        """Reload on SIGHUP (``settings.reload_on_sighup``) and on changes to the watched files
        (``settings.watch``), until cancelled."""
        settings = self.runtime.settings
        loop = asyncio.get_running_loop()
        listening = settings.reload_on_sighup and _listen(loop, lambda: self._reload_quietly("SIGHUP"))
        try:
            paths = [p for p in watched_paths(settings) if p.exists()] if settings.watch else []
            if not paths:
                await asyncio.Event().wait()  # SIGHUP only, until cancelled
            import watchfiles

            async for changes in watchfiles.awatch(*paths, debounce=200, step=50, force_polling=settings.watch_polling):
                await self._reload_quietly(f"{len(changes)} file change(s): " + _names(changes))
        finally:
            if listening:
                loop.remove_signal_handler(signal.SIGHUP)


def _listen(loop: asyncio.AbstractEventLoop, reload: Callable[[], Any]) -> bool:
    """Call ``reload`` (a coroutine function) on SIGHUP; False where no handler can be installed:
    outside the main thread (a server run by a test), or without SIGHUP (Windows)."""
    try:
        loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload()))
    except (ValueError, RuntimeError, NotImplementedError, AttributeError):
        return False
    return True


def _names(changes: Iterable[tuple[Any, str]]) -> str:
    return ", ".join(sorted({Path(path).name for _, path in changes}))
