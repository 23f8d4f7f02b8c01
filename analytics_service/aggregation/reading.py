"""The read side: per-currency summaries and revenue buckets as the API presents them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from analytics_service.aggregation.facts import ORDER_STATES, RECOGNISED_STATES, state_of
from analytics_service.aggregation.money import average, money
from analytics_service.aggregation.totals import Granularity, Totals, bucket_floor

__all__ = [
    "GRANULARITIES",
    "BucketPlan",
    "CurrencySummary",
    "Granularity",
    "InvalidRangeError",
    "average",
    "money",
    "plan_buckets",
    "summarize",
]

GRANULARITIES: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


class InvalidRangeError(ValueError):
    """A revenue query range that is empty, reversed or has too many buckets."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class CurrencySummary:
    currency: str
    total_orders: int  # booked
    total_revenue: Decimal  # booked
    average_order_value: Decimal  # of booked orders
    recognised_orders: int = 0
    recognised_revenue: Decimal = Decimal(0)
    orders_by_status: dict[str, int] = field(default_factory=dict)


def summarize(
    totals: Mapping[str, Totals], by_status: Mapping[tuple[str, str], Totals] | None = None
) -> list[CurrencySummary]:
    """One entry per currency with a booked order or any order in any state."""
    states: dict[str, dict[str, Totals]] = defaultdict(dict)
    for (currency, status), t in (by_status or {}).items():
        if t.order_count > 0:
            states[currency][state_of(status)] = t
    out = []
    for currency in sorted(set(totals) | set(states)):
        t = totals.get(currency, Totals())
        mine = states.get(currency, {})
        if t.order_count <= 0 and not mine:
            continue
        recognised = sum((mine[s] for s in RECOGNISED_STATES if s in mine), Totals())
        out.append(
            CurrencySummary(
                currency=currency,
                total_orders=max(t.order_count, 0),
                total_revenue=t.revenue,
                average_order_value=average(t.revenue, t.order_count),
                recognised_orders=recognised.order_count,
                recognised_revenue=recognised.revenue,
                orders_by_status={s: mine[s].order_count for s in ORDER_STATES if s in mine},
            )
        )
    return out


@dataclass(frozen=True)
class BucketPlan:
    granularity: Granularity
    start: datetime  # inclusive, aligned to a bucket
    end: datetime  # exclusive, aligned to a bucket

    def starts(self) -> list[datetime]:
        step = GRANULARITIES[self.granularity]
        out, at = [], self.start
        while at < self.end:
            out.append(at)
            at += step
        return out


def plan_buckets(
    start: datetime | None,
    end: datetime | None,
    granularity: str,
    *,
    now: datetime,
    max_buckets: int,
) -> BucketPlan:
    """Aligns [start, end) outward to whole UTC buckets; by default the last 24 hours or 30
    days up to the current bucket. Raises InvalidRangeError naming the offending field."""
    if granularity not in GRANULARITIES:
        raise InvalidRangeError("granularity", "must be 'hour' or 'day'")
    gran: Granularity = "hour" if granularity == "hour" else "day"
    step = GRANULARITIES[gran]
    for name, value in (("from", start), ("to", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidRangeError(name, "must be an RFC 3339 time with a UTC offset")
    aligned_end = bucket_floor(end if end is not None else now, gran)
    if end is None or aligned_end < end.astimezone(UTC):
        aligned_end += step
    if start is None:
        aligned_start = aligned_end - (24 if gran == "hour" else 30) * step
    else:
        aligned_start = bucket_floor(start, gran)
    if aligned_start >= aligned_end:
        raise InvalidRangeError("from", "must be before 'to'")
    count = (aligned_end - aligned_start) // step
    if count > max_buckets:
        raise InvalidRangeError(
            "from", f"the range spans {count} {gran} buckets; at most {max_buckets} allowed"
        )
    return BucketPlan(gran, aligned_start, aligned_end)
