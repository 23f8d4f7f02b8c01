"""What was sent: one Redis record per (notification, channel), so a redelivery sends once.

Protocol of one send: ``claim`` (atomically: already sent -> skip; someone else sending ->
busy; else take a lease under a fresh token), send, ``record`` (mark it sent under that token
with a TTL longer than the delivery horizon and count it for the audit, atomically and only
once per token, so a record retried after a lost reply never counts twice), or ``release`` the
lease on failure. A batch of messages makes one round trip for all its claims and one for all
its records (one script call each).

The claim closes the window between two concurrent deliveries of one event (a duplicate publish
by the outbox relay lands on two consumers at once). A Redis outage between a send the channel
accepted and its record does not send again: the handler carries the send (and its token) in
the message's headers to a retry tier and records it, without sending, once Redis answers.
What remains is a crash of the worker between the channel's answer and the record (one round
trip) or the confirm of the copy that carries the send, or a second copy of the event arriving
through another path after the lease expired and before the carried record landed: then the
channel receives a second copy. Webhook and SMTP copies carry a stable idempotency key /
Message-ID, so receivers can drop it themselves.

Redis must persist (append-only file): a Redis that restarts empty forgets every record, and
any redelivery or replay after that sends again (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    ReadOnlyError,
    TryAgainError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

__all__ = [
    "Claim",
    "ClaimRequest",
    "RecordRequest",
    "RedisSentStore",
    "SentStore",
    "is_outage",
]

# Redis unreachable, loading, failing over: the store is down, the message is fine.
_OUTAGES = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    TryAgainError,
    OSError,
    TimeoutError,
)


def is_outage(exc: BaseException) -> bool:
    """True when an error says the store is unavailable, not that the request is wrong."""
    return isinstance(exc, _OUTAGES)


# One call claims a whole batch. KEYS: one sent key per request; ARGV: the lease in ms, then
# one token per request. A key Redis refuses (another type) answers its own error.
_CLAIM = """
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.pcall('GET', key)
  if type(v) == 'table' and v.err then
    out[i] = v
  elseif v then
    if v == 'sent' or string.sub(v, 1, 5) == 'sent:' then out[i] = 'sent' else out[i] = 'busy' end
  else
    local set = redis.pcall('SET', key, ARGV[i + 1], 'PX', ARGV[1])
    if type(set) == 'table' and set.err ~= nil then out[i] = set else out[i] = 'claimed' end
  end
end
return out
"""

# One call records a whole batch. KEYS: one sent key per request, then the audit keys.
# ARGV: sent TTL, audit TTL, then per request its token, the index in KEYS of its audit key
# (0: not counted) and its audit field. A send counts once per token: a record repeated after a
# lost reply finds its own mark and counts nothing.
_RECORD = """
local function failed(r) return type(r) == 'table' and r.err ~= nil end
local out = {}
for i = 1, (#ARGV - 2) / 3 do
  local mark = 'sent:' .. ARGV[3 * i]
  local audit = tonumber(ARGV[3 * i + 1])
  local r = redis.pcall('GET', KEYS[i])
  if failed(r) then
    out[i] = r
  elseif r == mark then
    out[i] = 0
  else
    r = redis.pcall('SET', KEYS[i], mark, 'EX', ARGV[1])
    if not failed(r) and audit > 0 then
      r = redis.pcall('HINCRBY', KEYS[audit], ARGV[3 * i + 2], 1)
      if not failed(r) then r = redis.pcall('EXPIRE', KEYS[audit], ARGV[2]) end
    end
    if failed(r) then out[i] = r else out[i] = 1 end
  end
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class ClaimRequest:
    key: str
    channel: str
    token: str


@dataclass(frozen=True)
class RecordRequest:
    key: str
    channel: str
    token: str
    order_id: str | None
    audit_field: str


class Claim(enum.Enum):
    CLAIMED = "claimed"
    SENT = "sent"
    BUSY = "busy"


class SentStore(Protocol):
    async def claim_many(
        self, requests: Sequence[ClaimRequest], lease: float
    ) -> list[Claim | Exception]:
        """One answer per request, in order; a request Redis refused answers its error."""
        ...

    async def record_many(self, requests: Sequence[RecordRequest]) -> None:
        """Record every send, idempotently per token; raises if any one was not recorded."""
        ...

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
        # A batch in one script call: one command to pack and one for Redis to parse, where a
        # pipeline of a call per request cost ~35 µs of the worker's CPU per request against ~14
        # (docs/benchmark.md). redis-py loads a script Redis does not know (a restart, SCRIPT
        # FLUSH) and calls it again: NOSCRIPT means nothing ran.
        self._claim = redis.register_script(_CLAIM)
        self._record = redis.register_script(_RECORD)
        self._release = redis.register_script(_RELEASE)

    def _sent_key(self, key: str, channel: str) -> str:
        return f"{self._prefix}:sent:{key}:{channel}"

    def _audit_key(self, order_id: str) -> str:
        return f"{self._prefix}:audit:{order_id}"

    @property
    def _scheduled_key(self) -> str:
        return f"{self._prefix}:scheduled"

    async def claim_many(
        self, requests: Sequence[ClaimRequest], lease: float
    ) -> list[Claim | Exception]:
        if not requests:
            return []
        keys = [self._sent_key(r.key, r.channel) for r in requests]
        lease_ms = max(1, round(lease * 1000))
        answers = await self._claim(keys=keys, args=[lease_ms, *(r.token for r in requests)])
        return [a if isinstance(a, Exception) else Claim(_text(a)) for a in answers]

    async def record_many(self, requests: Sequence[RecordRequest]) -> None:
        if not requests:
            return
        keys = [self._sent_key(r.key, r.channel) for r in requests]
        args: list[Any] = [self._sent_ttl, self._audit_ttl]
        for r in requests:
            if r.order_id is None:
                args += [r.token, 0, ""]
            else:
                keys.append(self._audit_key(r.order_id))
                args += [r.token, len(keys), r.audit_field]
        for answer in await self._record(keys=keys, args=args):
            if isinstance(answer, Exception):
                raise answer

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
