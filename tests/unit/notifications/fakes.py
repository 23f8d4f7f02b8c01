"""In-memory fakes of the worker's ports: the sent store and a channel."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from notification_worker.planning import Notification
from notification_worker.sent_store import Claim
from notification_worker.templates import Rendered


class FakeSentStore:
    def __init__(self) -> None:
        self.sent: set[tuple[str, str]] = set()
        self.claims: dict[tuple[str, str], str] = {}
        self.audits: dict[str, dict[str, int]] = {}
        self.scheduled: dict[str, float] = {}
        self.fail_record = 0
        self.down = False

    async def claim(self, key: str, channel: str, token: str, lease: float) -> Claim:
        if self.down:
            raise ConnectionError("redis down")
        if (key, channel) in self.sent:
            return Claim.SENT
        if (key, channel) in self.claims:
            return Claim.BUSY
        self.claims[(key, channel)] = token
        return Claim.CLAIMED

    async def record(self, key: str, channel: str, order_id: str | None, audit_field: str) -> None:
        if self.fail_record:
            self.fail_record -= 1
            raise ConnectionError("redis blip")
        self.sent.add((key, channel))
        self.claims.pop((key, channel), None)
        if order_id is not None:
            row = self.audits.setdefault(order_id, {})
            row[audit_field] = row.get(audit_field, 0) + 1

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
