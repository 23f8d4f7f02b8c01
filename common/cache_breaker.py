"""The cache's circuit breaker: after a Redis error the cache is bypassed for ``cooldown``
seconds, so a dead Redis costs nothing per request (short socket timeouts bound the first)."""

from __future__ import annotations

import time
from collections.abc import Callable

from common.observability import get_logger

__all__ = ["CacheBreaker"]

log = get_logger(__name__)


class CacheBreaker:
    def __init__(
        self, cooldown: float = 1.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._down_until = 0.0

    def available(self) -> bool:
        return self._clock() >= self._down_until

    def failed(self, op: str, exc: Exception) -> None:
        """Opens (or keeps open) the bypass; logs only when it opens."""
        if self.available():
            log.warning("cache_unavailable", op=op, error=repr(exc), bypass_seconds=self.cooldown)
        self._down_until = self._clock() + self.cooldown
