"""Redis cache-aside for order reads, which never lets Redis trouble fail a request."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from prometheus_client import Counter
from redis.asyncio import Redis

from common.cache_breaker import CacheBreaker
from common.redis_gets import PipelinedRedisGets

__all__ = ["RedisOrderCache"]


class RedisOrderCache:
    """Short socket timeouts bound the cost of a slow Redis; after an error the cache is
    bypassed for ``cooldown`` seconds so a dead Redis costs nothing per request (CacheBreaker).
    Reads, the hot path, go pipelined on a connection of their own (PipelinedRedisGets); writes
    and deletes through the client's pool."""

    def __init__(
        self,
        redis: Redis,
        *,
        ttl_seconds: int,
        requests: Counter,
        cooldown: float = 1.0,
        prefix: str = "order:v1:",
    ) -> None:
        self._redis = redis
        self._gets = PipelinedRedisGets(redis.connection_pool)
        self._ttl = ttl_seconds
        self._requests = requests
        self._breaker = CacheBreaker(cooldown)
        self._prefix = prefix

    def _key(self, order_id: uuid.UUID) -> str:
        return f"{self._prefix}{order_id}"

    async def get(self, order_id: uuid.UUID) -> bytes | None:
        if not self._breaker.available():
            self._requests.labels("bypassed").inc()
            return None
        try:
            value = await self._gets.get(self._key(order_id))
        except Exception as exc:
            self._requests.labels("error").inc()
            self._breaker.failed("get", exc)
            return None
        self._requests.labels("hit" if value is not None else "miss").inc()
        return value if isinstance(value, bytes) else None

    async def fill(self, order_id: uuid.UUID, body: bytes) -> None:
        # NX: a write that landed between our read and this fill has already stored newer data.
        await self._set(order_id, body, nx=True)

    async def put(self, order_id: uuid.UUID, body: bytes) -> None:
        await self._set(order_id, body, nx=False)

    async def put_many(self, bodies: Mapping[uuid.UUID, bytes]) -> None:
        if not bodies or not self._breaker.available():
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for order_id, body in bodies.items():
                    pipe.set(self._key(order_id), body, ex=self._ttl)
                await pipe.execute()
        except Exception as exc:
            self._breaker.failed("set", exc)

    async def invalidate(self, order_id: uuid.UUID) -> None:
        if not self._breaker.available():
            return
        try:
            await self._redis.delete(self._key(order_id))
        except Exception as exc:
            self._breaker.failed("delete", exc)

    async def _set(self, order_id: uuid.UUID, body: bytes, *, nx: bool) -> None:
        if not self._breaker.available():
            return
        try:
            await self._redis.set(self._key(order_id), body, ex=self._ttl, nx=nx)
        except Exception as exc:
            self._breaker.failed("set", exc)

    async def aclose(self) -> None:
        """Closes the read connection; the client (and its pool) belongs to the caller."""
        await self._gets.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False
