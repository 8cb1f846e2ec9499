"""A key's request rate (a sliding minute) and concurrency (requests and streams not yet ended)."""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field


@dataclass
class Limits:
    requests_per_minute: int | None = None
    max_concurrent: int | None = None
    _recent: collections.deque[float] = field(default_factory=collections.deque)
    running: int = 0

    def admit(self, now: float | None = None) -> tuple[str, int] | None:
        """None if a request may start now (it is counted); else which limit it is over and the
        seconds until it may retry."""
        now = time.monotonic() if now is None else now
        window = self._recent
        while window and now - window[0] >= 60:
            window.popleft()
        if self.max_concurrent is not None and self.running >= self.max_concurrent:
            return "concurrent requests", 1
        if self.requests_per_minute is not None and len(window) >= self.requests_per_minute:
            return "requests per minute", max(1, math.ceil(60 - (now - window[0])))
        window.append(now)
        self.running += 1
        return None

    def done(self) -> None:
        self.running -= 1

    def headers(self, now: float | None = None) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for the request rate (none without a rate limit)."""
        if self.requests_per_minute is None:
            return {}
        now = time.monotonic() if now is None else now
        reset = 60 - (now - self._recent[0]) if self._recent else 0
        return {"x-ratelimit-limit-requests": str(self.requests_per_minute),
                "x-ratelimit-remaining-requests": str(max(0, self.requests_per_minute - len(self._recent))),
                "x-ratelimit-reset-requests": f"{max(0.0, reset):.0f}s"}
