"""What was sent: one Redis record per (notification, channel), so a redelivery sends once.

Protocol of one send: ``claim`` (atomically: already sent -> skip; someone else sending ->
busy; else take a lease), send, ``record`` (mark sent with a TTL longer than the delivery
horizon and count the send for the audit, in one MULTI), or ``release`` the lease on failure.

The claim closes the window between two concurrent deliveries of one event (a duplicate publish
by the outbox relay lands on two consumers at once). The window that remains is the crash or
Redis outage between a send that the channel accepted and its record: the lease then expires,
the broker redelivers, and the channel receives a second copy. It is as small as a send can make
it: the record is the very next round-trip after the channel's answer, retried briefly on a
Redis error, and the message is acked only after it. Webhook and SMTP copies carry a stable
idempotency key / Message-ID, so receivers can drop that second copy themselves.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from typing import Protocol

from redis.asyncio import Redis

__all__ = ["Claim", "RedisSentStore", "SentStore"]

_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v == 'sent' then return 'sent' end
if v then return 'busy' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'claimed'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

SENT = "sent"


class Claim(enum.Enum):
    CLAIMED = "claimed"
    SENT = "sent"
    BUSY = "busy"


class SentStore(Protocol):
    async def claim(self, key: str, channel: str, token: str, lease: float) -> Claim: ...

    async def record(
        self, key: str, channel: str, order_id: str | None, audit_field: str
    ) -> None: ...

    async def release(self, key: str, channel: str, token: str) -> None: ...

    async def mark_scheduled(self, key: str, due: float) -> None: ...

    async def unschedule(self, key: str) -> None: ...

    async def scheduled_count(self) -> int: ...

    async def audit(self, order_ids: Sequence[str]) -> dict[str, dict[str, int]]: ...

    async def ping(self) -> bool: ...


class RedisSentStore:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        sent_ttl_seconds: int,
        audit_ttl_seconds: int,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._sent_ttl = sent_ttl_seconds
        self._audit_ttl = audit_ttl_seconds
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    def _sent_key(self, key: str, channel: str) -> str:
        return f"{self._prefix}:sent:{key}:{channel}"

    def _audit_key(self, order_id: str) -> str:
        return f"{self._prefix}:audit:{order_id}"

    @property
    def _scheduled_key(self) -> str:
        return f"{self._prefix}:scheduled"

    async def claim(self, key: str, channel: str, token: str, lease: float) -> Claim:
        result = await self._claim(
            keys=[self._sent_key(key, channel)], args=[token, max(1, round(lease * 1000))]
        )
        return Claim(result.decode() if isinstance(result, bytes) else result)

    async def record(self, key: str, channel: str, order_id: str | None, audit_field: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._sent_key(key, channel), SENT, ex=self._sent_ttl)
            if order_id is not None:
                audit_key = self._audit_key(order_id)
                pipe.hincrby(audit_key, audit_field, 1)
                pipe.expire(audit_key, self._audit_ttl)
            await pipe.execute()

    async def release(self, key: str, channel: str, token: str) -> None:
        await self._release(keys=[self._sent_key(key, channel)], args=[token])

    async def mark_scheduled(self, key: str, due: float) -> None:
        await self._redis.zadd(self._scheduled_key, {key: due}, nx=True)

    async def unschedule(self, key: str) -> None:
        await self._redis.zrem(self._scheduled_key, key)

    async def scheduled_count(self) -> int:
        # A parked or purged scheduled message never unschedules itself; forget it eventually.
        await self._redis.zremrangebyscore(
            self._scheduled_key, "-inf", time.time() - self._sent_ttl
        )
        return int(await self._redis.zcard(self._scheduled_key))

    async def audit(self, order_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for order_id in order_ids:
                pipe.hgetall(self._audit_key(order_id))
            rows = await pipe.execute()
        return {
            order_id: {_text(k): int(v) for k, v in row.items()}
            for order_id, row in zip(order_ids, rows, strict=True)
            if row
        }

    async def ping(self) -> bool:
        return bool(await asyncio.wait_for(self._redis.ping(), 1.0))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
