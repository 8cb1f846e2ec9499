"""What a request holds of a model pool: a lent instance (:class:`Lease`) or a queue place taken
ahead of its wait (:class:`Reservation`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from localai_runtime.backends import ModelInstance


class Reservation:
    """A queue place of one pool (``ModelPool.reserve``), taken over by that pool's ``acquire`` or
    given back by :meth:`release` (which does nothing once it was taken over)."""

    def __init__(self, owner: object, give_back: Callable[[], None]) -> None:
        self._owner = owner
        self._give_back = give_back
        self.held = True

    def take(self, pool: object) -> bool:
        """Hand the place over to ``pool``'s ``acquire``: True when it is that pool's; else it is
        given back (a reload gave the registration another pool meanwhile) and False."""
        if self.held and pool is self._owner:
            self.held = False
            return True
        self.release()
        return False

    def release(self) -> None:
        if self.held:
            self.held = False
            self._give_back()


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
