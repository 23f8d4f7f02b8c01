"""The ports the handler and the API talk to; adapters implement them, fakes stand in for tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from analytics_service.aggregation import Change, Difference, OrderFact, Totals

__all__ = [
    "AggregateRebuilder",
    "AnalyticsReader",
    "AnalyticsStore",
    "AuditedOrder",
    "InboxPruner",
    "RankedEntry",
    "RevenueRow",
    "StoreConflictError",
    "StoreUnavailableError",
    "SummaryInvalidator",
    "SummaryRows",
]


class StoreUnavailableError(Exception):
    """The database cannot be reached or did not answer in time."""


class StoreConflictError(Exception):
    """A deadlock or lock wait timeout: the transaction was rolled back and may be retried."""


@dataclass(frozen=True)
class SummaryRows:
    totals: dict[str, Totals]  # booked, per currency
    last_updated: datetime | None
    # Orders per (currency, lifecycle state); recognised = the "confirmed" rows.
    by_status: dict[tuple[str, str], Totals] = field(default_factory=dict)


@dataclass(frozen=True)
class RevenueRow:
    bucket_start: datetime
    currency: str
    order_count: int  # booked
    revenue: Decimal  # booked
    recognised_count: int = 0
    recognised_revenue: Decimal = Decimal(0)


@dataclass(frozen=True)
class RankedEntry:
    id: str
    currency: str
    order_count: int
    revenue: Decimal
    quantity: int


@dataclass(frozen=True)
class AuditedOrder:
    order_id: uuid.UUID
    total_amount: Decimal
    currency: str
    occurred_at: datetime
    applied_at: datetime
    status: str = "created"


class AnalyticsStore(Protocol):
    async def apply(
        self, consumer: str, facts: Sequence[OrderFact], applied_at: datetime
    ) -> list[Change]:
        """Record the facts and their aggregates in one transaction; return a change for every
        event not seen before (``effective`` False when its order already had that version or a
        newer one). Events already in the inbox are left out."""
        ...


class InboxPruner(Protocol):
    async def prune_inbox(self, consumer: str, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` inbox rows of ``consumer`` received before ``before``;
        return how many went."""
        ...


class AnalyticsReader(Protocol):
    async def summary(self) -> SummaryRows: ...

    async def revenue(
        self, start: datetime, end: datetime, granularity: str, currency: str | None
    ) -> list[RevenueRow]: ...

    async def top(self, kind: str, limit: int, currency: str | None) -> list[RankedEntry]: ...

    async def audit(self, order_ids: Sequence[uuid.UUID]) -> list[AuditedOrder]: ...


class AggregateRebuilder(Protocol):
    async def rebuild(self) -> list[Difference]: ...


class SummaryInvalidator(Protocol):
    async def invalidate(self) -> None: ...
