"""Read use cases of the analytics API: each returns a read model (analytics_service/
read_models.py); the summary returns its encoded body, which is what the Redis cache holds."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import msgspec

from analytics_service.aggregation import BucketPlan
from analytics_service.ports import AnalyticsReader, StoreUnavailableError
from analytics_service.read_models import (
    AuditResponse,
    RevenueResponse,
    TopCustomersResponse,
    TopProductsResponse,
    audit_response,
    revenue_response,
    summary_response,
    top_customers_response,
    top_products_response,
)

__all__ = ["AnalyticsQueries", "SummaryCache", "SummaryResult"]

CacheStatus = Literal["hit", "miss", "stale"]
_encoder = msgspec.json.Encoder()


class SummaryCache(Protocol):
    async def get(self) -> tuple[bytes | None, str]: ...

    async def put(self, generation: str, body: bytes) -> None: ...

    async def fallback(self) -> bytes | None: ...


@dataclass(frozen=True)
class SummaryResult:
    body: bytes
    cache: CacheStatus


class AnalyticsQueries:
    def __init__(self, reader: AnalyticsReader, cache: SummaryCache) -> None:
        self._reader = reader
        self._cache = cache

    async def summary(self) -> SummaryResult:
        """From Redis when fresh, else from MySQL; the last known summary while MySQL is down.

        Raises StoreUnavailableError when MySQL is down and Redis has nothing.
        """
        cached, generation = await self._cache.get()
        if cached is not None:
            return SummaryResult(cached, "hit")
        try:
            rows = await self._reader.summary()
        except StoreUnavailableError:
            fallback = await self._cache.fallback()
            if fallback is None:
                raise
            return SummaryResult(fallback, "stale")
        body = _encoder.encode(summary_response(rows))
        await self._cache.put(generation, body)
        return SummaryResult(body, "miss")

    async def revenue(self, plan: BucketPlan, currency: str | None) -> RevenueResponse:
        rows = await self._reader.revenue(plan.start, plan.end, plan.granularity, currency)
        return revenue_response(plan, currency, rows)

    async def top_products(self, limit: int, currency: str | None) -> TopProductsResponse:
        entries = await self._reader.top("product", limit, currency)
        return top_products_response(limit, currency, entries)

    async def top_customers(self, limit: int, currency: str | None) -> TopCustomersResponse:
        entries = await self._reader.top("customer", limit, currency)
        return top_customers_response(limit, currency, entries)

    async def audit(self, order_ids: Sequence[uuid.UUID]) -> AuditResponse:
        return audit_response(order_ids, await self._reader.audit(order_ids))
