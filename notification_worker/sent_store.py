"""What was sent: one Redis record per (notification, channel), so a redelivery sends once.

Protocol of one send: ``claim`` (atomically: already sent -> skip; someone else sending ->
busy; else take a lease under a fresh token), send, ``record`` (mark it sent under that token
with a TTL longer than the delivery horizon and count it for the audit, atomically and only
once per token, so a record retried after a lost reply never counts twice), or ``release`` the
lease on failure. A batch of messages makes one round trip for all its claims and one for all
its records (pipelined script calls).

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
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    NoScriptError,
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


_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then
  if v == 'sent' or string.sub(v, 1, 5) == 'sent:' then return 'sent' end
  return 'busy'
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 'claimed'
"""

# KEYS: sent key [, audit key]; ARGV: token, sent TTL [, audit field, audit TTL].
_RECORD = """
local mark = 'sent:' .. ARGV[1]
if redis.call('GET', KEYS[1]) == mark then return 0 end
redis.call('SET', KEYS[1], mark, 'EX', ARGV[2])
if KEYS[2] then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return 1
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
        self._claim_sha = _Script(_CLAIM)
        self._record_sha = _Script(_RECORD)
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
        lease_ms = max(1, round(lease * 1000))
        calls = [([self._sent_key(r.key, r.channel)], [r.token, lease_ms]) for r in requests]
        answers = await self._eval_many(self._claim_sha, calls)
        return [a if isinstance(a, Exception) else Claim(_text(a)) for a in answers]

    async def record_many(self, requests: Sequence[RecordRequest]) -> None:
        calls: list[tuple[list[str], list[Any]]] = []
        for r in requests:
            keys = [self._sent_key(r.key, r.channel)]
            args: list[Any] = [r.token, self._sent_ttl]
            if r.order_id is not None:
                keys.append(self._audit_key(r.order_id))
                args += [r.audit_field, self._audit_ttl]
            calls.append((keys, args))
        for answer in await self._eval_many(self._record_sha, calls):
            if isinstance(answer, Exception):
                raise answer

    async def _eval_many(
        self, script: _Script, calls: Sequence[tuple[list[str], list[Any]]]
    ) -> list[Any]:
        """EVALSHA every call in one pipelined round trip (loading the script once if Redis
        does not know it), without the SCRIPT EXISTS round trip redis-py's pipeline adds."""
        answers: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(2):
            if not todo:
                break
            async with self._redis.pipeline(transaction=False) as pipe:
                for i in todo:
                    keys, args = calls[i]
                    pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
            missing = []
            for i, result in zip(todo, results, strict=True):
                answers[i] = result
                if isinstance(result, NoScriptError):
                    missing.append(i)
            if missing:
                # Nothing ran for these: load the script and run just them again.
                await self._redis.script_load(script.source)
            todo = missing
        return answers

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


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()  # Redis names a script by its SHA1


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
