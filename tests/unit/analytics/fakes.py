"""In-memory fakes of the analytics ports."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from analytics_service.aggregation import Aggregates, Change, OrderFact, aggregate, supersedes
from analytics_service.ports import (
    AuditedOrder,
    RankedEntry,
    RevenueRow,
    StoreUnavailableError,
    SummaryRows,
)
from common.events import (
    OrderCreatedV1,
    decode_envelope,
    decode_event_data,
    encode_envelope,
    new_envelope,
)
from common.messaging.consumer import Delivery


class FakeStore:
    """AnalyticsStore and AnalyticsReader over dicts, with the inbox semantics of MySQL."""

    def __init__(self) -> None:
        self.inbox: set[tuple[str, uuid.UUID]] = set()
        self.facts: dict[uuid.UUID, OrderFact] = {}
        self.fail_with: list[Exception] = []
        # Events the database rejects whenever they are in the batch (a poison row).
        self.rejects: set[uuid.UUID] = set()
        self.down = False
        self.calls = 0

    async def apply(
        self, consumer: str, facts: Sequence[OrderFact], applied_at: datetime
    ) -> list[Change]:
        self.calls += 1
        if self.fail_with:
            raise self.fail_with.pop(0)
        if any(f.event_id in self.rejects for f in facts):
            raise RuntimeError("Data too long for column")
        changes = []
        for fact in sorted(facts, key=lambda f: f.order_version):
            if (consumer, fact.event_id) in self.inbox:
                continue
            self.inbox.add((consumer, fact.event_id))
            current = self.facts.get(fact.order_id)
            if supersedes(fact, current):
                self.facts[fact.order_id] = fact
                changes.append(Change(fact, current))
            else:
                changes.append(Change(fact, current, effective=False))
        return changes

    def aggregates(self) -> Aggregates:
        return aggregate(self.facts.values())

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailableError("down")

    async def summary(self) -> SummaryRows:
        self._check()
        aggregates = self.aggregates()
        totals = {k[0]: v for k, v in aggregates.currency.items()}
        by_status = {(k[0], k[1]): v for k, v in aggregates.status.items()}
        return SummaryRows(totals, datetime(2026, 1, 1, tzinfo=UTC) if totals else None, by_status)

    async def revenue(
        self, start: datetime, end: datetime, granularity: str, currency: str | None
    ) -> list[RevenueRow]:
        self._check()
        aggregates = self.aggregates()
        rows: dict[tuple[datetime, str], RevenueRow] = {}
        for k, t in aggregates.hourly.items():
            rows[(k[0], k[1])] = RevenueRow(k[0], k[1], t.order_count, t.revenue)
        for k, t in aggregates.recognised.items():
            booked = rows.get((k[0], k[1]), RevenueRow(k[0], k[1], 0, Decimal(0)))
            rows[(k[0], k[1])] = dataclasses.replace(
                booked, recognised_count=t.order_count, recognised_revenue=t.revenue
            )
        return [
            r
            for _, r in sorted(rows.items())
            if start <= r.bucket_start < end and currency in (None, r.currency)
        ]

    async def top(self, kind: str, limit: int, currency: str | None) -> list[RankedEntry]:
        self._check()
        rows = self.aggregates().get("product" if kind == "product" else "customer")
        entries = [
            RankedEntry(k[0], k[1], t.order_count, t.revenue, t.quantity)
            for k, t in rows.items()
            if currency in (None, k[1])
        ]
        return sorted(entries, key=lambda e: (-e.revenue, e.id))[:limit]

    async def audit(self, order_ids: Sequence[uuid.UUID]) -> list[AuditedOrder]:
        self._check()
        return [
            AuditedOrder(
                f.order_id, f.total_amount, f.currency, f.occurred_at, f.occurred_at, f.state
            )
            for i in order_ids
            if (f := self.facts.get(i)) is not None
        ]


class FakeInvalidator:
    def __init__(self) -> None:
        self.calls = 0

    async def invalidate(self) -> None:
        self.calls += 1


class FakeSummaryCache:
    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}
        self.generation = "0"
        self.last: bytes | None = None
        self.down = False

    async def get(self) -> tuple[bytes | None, str]:
        if self.down:
            return None, ""
        return self.entries.get(self.generation), self.generation

    async def put(self, generation: str, body: bytes) -> None:
        if generation and not self.down:
            self.entries[generation] = body
            self.last = body

    async def fallback(self) -> bytes | None:
        return None if self.down else self.last

    async def invalidate(self) -> None:
        self.generation = str(int(self.generation) + 1)


def order_delivery(
    *,
    event_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    amount: str = "10.00",
    currency: str = "USD",
    product_id: str = "prod-1",
    customer_id: str = "cust-1",
    created_at: datetime | None = None,
) -> Delivery:
    created = created_at or datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    outgoing = new_envelope(
        OrderCreatedV1(
            order_id=order_id or uuid.uuid4(),
            customer_id=customer_id,
            product_id=product_id,
            quantity=2,
            total_amount=Decimal(amount),
            currency=currency,
            status="PENDING",
            created_at=created,
        ),
        producer="tests",
        correlation_id="c-1",
        event_id=event_id,
        occurred_at=created,
    )
    envelope = decode_envelope(encode_envelope(outgoing))
    message: Any = object()  # the handler never touches the AMQP message
    return Delivery(
        message=message, attempt=1, envelope=envelope, event=decode_event_data(envelope)
    )
