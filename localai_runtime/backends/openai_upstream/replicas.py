"""The replicas of one upstream: which one takes the next request, and how healthy each is.

The replica with the fewest requests in flight is chosen (ties go round the list, so a
sequence of requests spreads). ``failures_to_cool`` failures in a row (a connection error, a
timeout, a 5xx) make a replica cool down for ``cooldown_seconds``; after that the next request
probes it (``GET /models``) before using it, and a failed probe cools it down again. Everything
here runs on the event loop; nothing blocks.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

HEALTHY = "healthy"
COOLING = "cooling"
PROBING = "probing"


@dataclass
class Replica:
    url: str
    in_flight: int = 0
    failures: int = 0
    """Failures in a row."""
    cool_until: float = 0.0
    """``time.monotonic()`` until which the replica rests (0: it does not)."""
    probing: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)
    """Requests sent here, by outcome (ok, upstream_4xx, upstream_5xx, connect_error, timeout, stream_error)."""
    cooldowns: int = 0
    last_error: str | None = None

    @property
    def state(self) -> str:
        if self.probing:
            return PROBING
        return COOLING if self.cool_until else HEALTHY

    def status(self) -> dict[str, Any]:
        """What the registrations endpoint shows."""
        resting = max(0.0, self.cool_until - time.monotonic()) if self.cool_until else 0.0
        return {"url": self.url, "state": self.state, "in_flight": self.in_flight,
                "consecutive_failures": self.failures, "cooldown_remaining_s": round(resting, 3),
                "requests": dict(sorted(self.outcomes.items())), "cooldowns": self.cooldowns,
                "last_error": self.last_error}


class ReplicaSet:
    def __init__(self, urls: tuple[str, ...], failures_to_cool: int, cooldown_seconds: float) -> None:
        self.replicas = [Replica(url) for url in urls]
        self.failures_to_cool = failures_to_cool
        self.cooldown_seconds = cooldown_seconds
        self.failovers = 0
        self._turn = itertools.count()

    def candidates(self, tried: set[str]) -> list[Replica]:
        """Replicas not yet tried for this request that may take it now, best first; a replica
        whose rest is over comes with ``probe=True`` semantics: the caller probes it first."""
        now = time.monotonic()
        usable = [r for r in self.replicas if r.url not in tried and not r.probing
                  and (not r.cool_until or r.cool_until <= now)]
        start = next(self._turn) % len(self.replicas)
        order = {r.url: (i - start) % len(self.replicas) for i, r in enumerate(self.replicas)}
        return sorted(usable, key=lambda r: (r.in_flight, order[r.url]))

    def soonest_back(self) -> float:
        """Seconds until the first resting replica may be probed (0 if one may be now)."""
        now = time.monotonic()
        return max(0.0, min((r.cool_until - now for r in self.replicas if r.cool_until), default=0.0))

    def succeeded(self, replica: Replica) -> None:
        replica.failures = 0
        replica.cool_until = 0.0
        replica.last_error = None

    def failed(self, replica: Replica, why: str) -> None:
        """A failure of ``replica``; the one that reaches ``failures_to_cool`` in a row, or a failed
        probe, rests it. Requests that were in flight when it began resting do not extend the rest."""
        replica.failures += 1
        replica.last_error = why
        now = time.monotonic()
        if replica.cool_until > now:
            return
        if replica.cool_until or replica.failures >= self.failures_to_cool:
            replica.cool_until = now + self.cooldown_seconds
            replica.cooldowns += 1

    def status(self) -> list[dict[str, Any]]:
        return [replica.status() for replica in self.replicas]
