"""In-memory fakes of the worker's ports: the sent store and a channel."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from common.hosting import Host
from notification_worker.planning import Notification
from notification_worker.sent_store import Claim, ClaimRequest, RecordRequest
from notification_worker.templates import Rendered


class FakeSentStore:
    """Counts its round trips (``claim_calls``, ``record_calls``) like Redis would see them."""

    def __init__(self) -> None:
        self.sent: set[tuple[str, str]] = set()
        self.tokens: dict[tuple[str, str], str] = {}
        self.claims: dict[tuple[str, str], str] = {}
        self.audits: dict[str, dict[str, int]] = {}
        self.scheduled: dict[str, float] = {}
        self.fail_record = 0
        self.down = False
        self.claim_calls = 0
        self.record_calls = 0

    async def claim_many(
        self, requests: Sequence[ClaimRequest], lease: float
    ) -> list[Claim | Exception]:
        self.claim_calls += 1
        if self.down:
            raise ConnectionError("redis down")
        return [self._claim(r) for r in requests]

    def _claim(self, request: ClaimRequest) -> Claim:
        key = (request.key, request.channel)
        if key in self.sent:
            return Claim.SENT
        if key in self.claims:
            return Claim.BUSY
        self.claims[key] = request.token
        return Claim.CLAIMED

    async def record_many(self, requests: Sequence[RecordRequest]) -> None:
        self.record_calls += 1
        if self.down:
            raise ConnectionError("redis down")
        if self.fail_record:
            self.fail_record -= 1
            raise ConnectionError("redis blip")
        for r in requests:
            key = (r.key, r.channel)
            if self.tokens.get(key) == r.token:
                continue  # this very send was recorded already (a retried record)
            self.sent.add(key)
            self.tokens[key] = r.token
            self.claims.pop(key, None)
            if r.order_id is not None:
                row = self.audits.setdefault(r.order_id, {})
                row[r.audit_field] = row.get(r.audit_field, 0) + 1

    def expire_leases(self) -> None:
        """Every claim's lease runs out (the fake has no clock)."""
        self.claims.clear()

    async def release(self, key: str, channel: str, token: str) -> None:
        if self.claims.get((key, channel)) == token:
            del self.claims[(key, channel)]

    async def mark_scheduled(self, key: str, due: float) -> None:
        self.scheduled.setdefault(key, due)

    async def unschedule(self, key: str) -> None:
        self.scheduled.pop(key, None)

    async def scheduled_count(self) -> int:
        return len(self.scheduled)

    async def audit(self, order_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        if self.down:
            raise ConnectionError("redis down")
        return {o: dict(self.audits[o]) for o in order_ids if o in self.audits}

    async def ping(self) -> bool:
        return not self.down


@dataclass
class FakeChannel:
    name: str = "fake"
    timeout: float = 1.0
    failures: list[Exception] = field(default_factory=list)
    delay: float = 0.0
    sent: list[tuple[Notification, Rendered]] = field(default_factory=list)

    async def send(self, notification: Notification, message: Rendered) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((notification, message))

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


class IdleHosted:
    """A process with nothing to run: the host's routes without the worker."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def idle_host(checks: Mapping[str, Callable[[], Awaitable[bool]]]) -> Host:
    return Host("test", IdleHosted(), supervisors=(), checks=checks, required=checks)
