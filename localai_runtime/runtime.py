"""The per-server object handlers reach through the lifespan state.

A :class:`Runtime` holds what the app factory built (settings, the patched spec, and later the
registrations and backend instances). Handlers get it with :func:`current`; nothing lives in
module globals.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from connexion import context

from localai_runtime.settings import Settings
from localai_runtime.spec_pipeline import BuiltSpec

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    spec: BuiltSpec
    started_at: float = field(default_factory=time.time)
    ready: bool = False

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Runtime]:
        self.ready = True
        logger.info("ready")
        try:
            yield self
        finally:
            self.ready = False


def current() -> Runtime:
    """The runtime of the server handling the current request."""
    return context.scope["state"]["runtime"]
