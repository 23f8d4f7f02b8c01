"""Redis cache of the summary, keyed by a generation the consumer bumps after every commit.

A reader that computed a summary from data older than a commit stores it under the old
generation, which nobody reads again, so invalidation cannot be undone by a slow reader. The
short TTL bounds staleness when the consumer could not reach Redis to bump the generation.

The keys name the database the summary is computed from: deployments sharing one Redis (make
run and the benchmark's own databases, a staging copy) neither read nor invalidate each other's
summaries.
"""

from __future__ import annotations

from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from common.cache_breaker import CacheBreaker

__all__ = ["RedisSummaryCache", "summary_namespace"]

_PREFIX = "analytics:v1:summary"


def summary_namespace(database_url: str) -> str:
    """The database a summary is computed from, as part of its keys: host:port/name."""
    url = make_url(database_url)
    return f"{url.host or 'localhost'}:{url.port or 3306}/{url.database or ''}"


class RedisSummaryCache:
    def __init__(
        self,
        redis: Redis,
        *,
        namespace: str,
        ttl_seconds: float,
        fallback_ttl_seconds: int,
        requests: Counter | None = None,
        invalidations: Counter | None = None,
        cooldown: float = 1.0,
    ) -> None:
        self._redis = redis
        self._prefix = f"{_PREFIX}:{namespace}"
        self._generation_key = f"{self._prefix}:generation"
        self._fallback_key = f"{self._prefix}:last"
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._fallback_ttl = fallback_ttl_seconds
        self._requests = requests
        self._invalidations = invalidations
        self._breaker = CacheBreaker(cooldown)

    def _count(self, result: str) -> None:
        if self._requests is not None:
            self._requests.labels(result).inc()

    async def get(self) -> tuple[bytes | None, str]:
        """The cached summary (or None) and the generation to store a fresh one under."""
        if not self._breaker.available():
            self._count("bypassed")
            return None, ""
        try:
            raw_generation = await self._redis.get(self._generation_key)
            generation = _text(raw_generation) if raw_generation is not None else "0"
            body = _bytes(await self._redis.get(f"{self._prefix}:{generation}"))
        except Exception as exc:
            self._count("error")
            self._breaker.failed("get", exc)
            return None, ""
        self._count("hit" if body is not None else "miss")
        return body, generation

    async def put(self, generation: str, body: bytes) -> None:
        if not generation or not self._breaker.available():
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(f"{self._prefix}:{generation}", body, px=self._ttl_ms)
                pipe.set(self._fallback_key, body, ex=self._fallback_ttl)
                await pipe.execute()
        except Exception as exc:
            self._breaker.failed("set", exc)

    async def fallback(self) -> bytes | None:
        """The last summary computed, to answer while the database is down."""
        try:
            value = _bytes(await self._redis.get(self._fallback_key))
        except Exception as exc:
            self._breaker.failed("get_fallback", exc)
            return None
        if value is not None:
            self._count("stale")
        return value

    async def invalidate(self) -> None:
        """Best effort: while Redis is failing the TTL alone bounds staleness, so the consumer
        does not pay a timeout per batch."""
        if not self._breaker.available():
            if self._invalidations is not None:
                self._invalidations.labels("skipped").inc()
            return
        try:
            await self._redis.incr(self._generation_key)
        except Exception as exc:
            if self._invalidations is not None:
                self._invalidations.labels("error").inc()
            self._breaker.failed("incr", exc)
            return
        if self._invalidations is not None:
            self._invalidations.labels("ok").inc()

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
