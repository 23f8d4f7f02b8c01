"""Pure analytics rules: what a fact is, which aggregates it feeds, how buckets and money look.

No I/O here, so the consumer, the rebuild and the API agree on one definition of every total.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from common.events import Envelope, EventData, OrderCreatedV1

__all__ = [
    "GRANULARITIES",
    "AggregateKind",
    "Aggregates",
    "BucketPlan",
    "CurrencySummary",
    "Difference",
    "Granularity",
    "InvalidFactError",
    "InvalidRangeError",
    "Key",
    "OrderFact",
    "Totals",
    "aggregate",
    "average",
    "bucket_floor",
    "diff",
    "fact_from_event",
    "money",
    "plan_buckets",
    "summarize",
]

Granularity = Literal["hour", "day"]
GRANULARITIES: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
AggregateKind = Literal["currency", "hourly", "product", "customer"]

# What the analytics tables can hold; anything outside is parked rather than failing a batch.
MAX_ID_LENGTH = 64
MAX_STATUS_LENGTH = 32
MAX_QUANTITY = 2**31 - 1
MAX_AMOUNT = Decimal("99999999999999")
AMOUNT_SCALE = 4
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_AVERAGE_QUANTUM = Decimal("0.0001")
_CENT = Decimal("0.01")


class InvalidFactError(ValueError):
    """The event is well-formed by the contract but cannot be stored as a fact."""


class InvalidRangeError(ValueError):
    """A revenue query range that is empty, reversed or has too many buckets."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class OrderFact:
    """One order as analytics records it; every aggregate is a sum over these."""

    order_id: uuid.UUID
    event_id: uuid.UUID
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    status: str
    created_at: datetime
    occurred_at: datetime


def fact_from_event(envelope: Envelope, event: EventData) -> OrderFact:
    if not isinstance(event, OrderCreatedV1):
        raise InvalidFactError(f"{envelope.event_type} v{envelope.event_version} has no fact")
    problems = []
    for name, value in (("customer_id", event.customer_id), ("product_id", event.product_id)):
        if not value or len(value) > MAX_ID_LENGTH:
            problems.append(f"{name} must be 1-{MAX_ID_LENGTH} characters")
    if not _CURRENCY_RE.match(event.currency):
        problems.append("currency must be three upper-case letters")
    if not event.status or len(event.status) > MAX_STATUS_LENGTH:
        problems.append(f"status must be 1-{MAX_STATUS_LENGTH} characters")
    if event.quantity > MAX_QUANTITY:
        problems.append(f"quantity must be at most {MAX_QUANTITY}")
    if event.total_amount > MAX_AMOUNT:
        problems.append(f"total_amount must be at most {MAX_AMOUNT}")
    exponent = event.total_amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > AMOUNT_SCALE:
        problems.append(f"total_amount must have at most {AMOUNT_SCALE} decimal places")
    if problems:
        raise InvalidFactError("; ".join(problems))
    return OrderFact(
        order_id=event.order_id,
        event_id=envelope.event_id,
        customer_id=event.customer_id,
        product_id=event.product_id,
        quantity=event.quantity,
        total_amount=event.total_amount,
        currency=event.currency,
        status=event.status,
        created_at=event.created_at.astimezone(UTC),
        occurred_at=envelope.occurred_at.astimezone(UTC),
    )


@dataclass(frozen=True)
class Totals:
    order_count: int = 0
    revenue: Decimal = Decimal(0)
    quantity: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.order_count + other.order_count,
            self.revenue + other.revenue,
            self.quantity + other.quantity,
        )


Key = tuple[Any, ...]


@dataclass
class Aggregates:
    """Totals per currency, per (hour, currency), per (product, currency), per (customer,
    currency). Keys iterate sorted, so every writer locks rows in the same order."""

    currency: dict[Key, Totals] = field(default_factory=dict)
    hourly: dict[Key, Totals] = field(default_factory=dict)
    product: dict[Key, Totals] = field(default_factory=dict)
    customer: dict[Key, Totals] = field(default_factory=dict)

    def kinds(self) -> Iterator[tuple[AggregateKind, dict[Key, Totals]]]:
        yield "currency", self.currency
        yield "hourly", self.hourly
        yield "product", self.product
        yield "customer", self.customer

    def get(self, kind: AggregateKind) -> dict[Key, Totals]:
        return dict(self.kinds())[kind]

    def is_empty(self) -> bool:
        return not any(rows for _, rows in self.kinds())


def bucket_floor(moment: datetime, granularity: Granularity = "hour") -> datetime:
    moment = moment.astimezone(UTC)
    if granularity == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def aggregate(facts: Iterable[OrderFact]) -> Aggregates:
    sums: dict[AggregateKind, dict[Key, Totals]] = {
        "currency": defaultdict(Totals),
        "hourly": defaultdict(Totals),
        "product": defaultdict(Totals),
        "customer": defaultdict(Totals),
    }
    for fact in facts:
        one = Totals(1, fact.total_amount, fact.quantity)
        sums["currency"][(fact.currency,)] += one
        sums["hourly"][(bucket_floor(fact.created_at), fact.currency)] += one
        sums["product"][(fact.product_id, fact.currency)] += one
        sums["customer"][(fact.customer_id, fact.currency)] += one
    return Aggregates(**{kind: dict(sorted(rows.items())) for kind, rows in sums.items()})


@dataclass(frozen=True)
class Difference:
    kind: AggregateKind
    key: Key
    expected: Totals | None  # None: the row should not exist
    actual: Totals | None  # None: the row was missing

    def describe(self) -> str:
        key = "/".join(k.isoformat() if isinstance(k, datetime) else str(k) for k in self.key)
        return f"{self.kind} {key}: stored {_fmt(self.actual)}, facts say {_fmt(self.expected)}"


def _fmt(totals: Totals | None) -> str:
    if totals is None:
        return "nothing"
    return f"{totals.order_count} orders / {money(totals.revenue)} / qty {totals.quantity}"


def diff(expected: Aggregates, actual: Aggregates) -> list[Difference]:
    """Every row where the stored aggregates differ from what the facts add up to."""
    found: list[Difference] = []
    for kind, want in expected.kinds():
        have = actual.get(kind)
        for key in sorted(set(want) | set(have)):
            w, h = want.get(key), have.get(key)
            if w != h:
                found.append(Difference(kind, key, w, h))
    return found


def money(amount: Decimal) -> str:
    """Exact text of an amount: at least two places, trailing zeros beyond them dropped."""
    if amount == amount.quantize(_CENT):
        return str(amount.quantize(_CENT))
    return str(amount.normalize())


def average(revenue: Decimal, count: int) -> Decimal:
    if count <= 0:
        return Decimal(0)
    return (revenue / count).quantize(_AVERAGE_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class CurrencySummary:
    currency: str
    total_orders: int
    total_revenue: Decimal
    average_order_value: Decimal


def summarize(totals: Mapping[str, Totals]) -> list[CurrencySummary]:
    return [
        CurrencySummary(
            currency=currency,
            total_orders=t.order_count,
            total_revenue=t.revenue,
            average_order_value=average(t.revenue, t.order_count),
        )
        for currency, t in sorted(totals.items())
        if t.order_count > 0
    ]


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
