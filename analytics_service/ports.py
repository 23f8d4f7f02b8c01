"""The ports the handler and the API talk to; adapters implement them, fakes stand in for tests."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from analytics_service.aggregation import Difference, OrderFact, Totals

__all__ = [
    "AggregateRebuilder",
    "AnalyticsReader",
    "AnalyticsStore",
    "AuditedOrder",
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
    totals: dict[str, Totals]
    last_updated: datetime | None


@dataclass(frozen=True)
class RevenueRow:
    bucket_start: datetime
    currency: str
    order_count: int
    revenue: Decimal


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


class AnalyticsStore(Protocol):
    async def apply(
        self, consumer: str, facts: Sequence[OrderFact], applied_at: datetime
    ) -> list[OrderFact]:
        """Record the facts and their aggregates in one transaction; return only the facts
        that were new (not already seen as an event nor as an order)."""
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
