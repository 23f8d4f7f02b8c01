"""Pure analytics rules: what a fact is, which aggregates it feeds, how buckets and money look.

No I/O here, so the consumer, the rebuild and the API agree on one definition of every total.

Order lifecycle (issue 6). A fact is one order's latest known state: the event with the highest
``order_version`` seen wins, whatever order the events arrive in, and an older or equal version
changes nothing. Every aggregate is a sum of per-order contributions that depend only on that
state, so applying a change adds ``contribution(after) - contribution(before)``:

- booked (``currency``/``hourly``/``product``/``customer``: the existing ``total_orders`` and
  ``total_revenue``): orders in ``created``, ``paid`` or ``confirmed``. A scheduled order is not
  booked until its OrderCreated; a cancelled, rejected or payment-failed order is taken back out.
  Hourly buckets are by the order's ``created_at``.
- recognised (``recognised``): orders in ``confirmed``, bucketed by the hour of confirmation.
  Confirmed is final in the lifecycle; if a later version ever left it, the recognised revenue
  would be taken back the same way.
- ``status``: orders and revenue per (currency, state), for ``orders_by_status``.

A cancellation applied before its creation leaves the order cancelled and never booked, so no
total ever goes negative and the final figures do not depend on delivery order.
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

from common.events import Envelope, EventData, OrderCreatedV1, OrderTransitionV1

__all__ = [
    "BOOKED_STATES",
    "GRANULARITIES",
    "ORDER_STATES",
    "RECOGNISED_STATES",
    "REVERSED_STATES",
    "STATE_OF_EVENT",
    "AggregateKind",
    "Aggregates",
    "BucketPlan",
    "Change",
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
    "delta",
    "diff",
    "fact_from_event",
    "money",
    "plan_buckets",
    "state_of",
    "summarize",
    "supersedes",
]

Granularity = Literal["hour", "day"]
GRANULARITIES: dict[str, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
AggregateKind = Literal["currency", "hourly", "product", "customer", "recognised", "status"]

# The lifecycle state each event puts its order in; the fact stores this, not the producer's
# free-text ``status``, so the rules below never depend on its spelling.
STATE_OF_EVENT: dict[str, str] = {
    "OrderScheduled": "scheduled",
    "OrderCreated": "created",
    "OrderPaid": "paid",
    "OrderConfirmed": "confirmed",
    "OrderPaymentFailed": "payment_failed",
    "OrderRejected": "rejected",
    "OrderCancelled": "cancelled",
}
ORDER_STATES: tuple[str, ...] = tuple(STATE_OF_EVENT.values())
BOOKED_STATES = frozenset({"created", "paid", "confirmed"})
RECOGNISED_STATES = frozenset({"confirmed"})
# Booked revenue leaves the totals when an order ends in one of these.
REVERSED_STATES = frozenset({"payment_failed", "rejected", "cancelled"})

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
    order_version: int = 1
    # When the order entered ``status``; recognised revenue is bucketed by it.
    status_changed_at: datetime | None = None

    @property
    def state(self) -> str:
        return state_of(self.status)

    @property
    def changed_at(self) -> datetime:
        return self.status_changed_at or self.created_at

    @property
    def booked(self) -> bool:
        return self.state in BOOKED_STATES

    @property
    def recognised(self) -> bool:
        return self.state in RECOGNISED_STATES


def state_of(status: str) -> str:
    """The lifecycle state of a stored status; facts written before the lifecycle existed hold
    the producer's text of an OrderCreated (e.g. "PENDING"), which means created."""
    return status if status in STATE_OF_EVENT.values() else "created"


@dataclass(frozen=True)
class Change:
    """One new event applied to its order: ``before`` is the recorded state it met (None: the
    first event seen for the order). ``effective`` is False when the order already had this or
    a newer version, so the event changed nothing."""

    after: OrderFact
    before: OrderFact | None
    effective: bool = True


def supersedes(incoming: OrderFact, current: OrderFact | None) -> bool:
    return current is None or incoming.order_version > current.order_version


def fact_from_event(envelope: Envelope, event: EventData) -> OrderFact:
    if not isinstance(event, (OrderCreatedV1, OrderTransitionV1)):
        raise InvalidFactError(f"{envelope.event_type} v{envelope.event_version} has no fact")
    state = STATE_OF_EVENT.get(event.event_type)
    if state is None:  # pragma: no cover - every contract type with order data is listed
        raise InvalidFactError(f"{event.event_type} has no lifecycle state")
    problems = []
    for name, value in (("customer_id", event.customer_id), ("product_id", event.product_id)):
        if not value or len(value) > MAX_ID_LENGTH:
            problems.append(f"{name} must be 1-{MAX_ID_LENGTH} characters")
    if not _CURRENCY_RE.match(event.currency):
        problems.append("currency must be three upper-case letters")
    if event.order_version < 1 or event.order_version > MAX_QUANTITY:
        problems.append(f"order_version must be 1-{MAX_QUANTITY}")
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
        status=state,
        created_at=event.created_at.astimezone(UTC),
        occurred_at=envelope.occurred_at.astimezone(UTC),
        order_version=event.order_version,
        status_changed_at=(
            event.changed_at if isinstance(event, OrderTransitionV1) else envelope.occurred_at
        ).astimezone(UTC),
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

    def __neg__(self) -> Totals:
        return Totals(-self.order_count, -self.revenue, -self.quantity)

    def __sub__(self, other: Totals) -> Totals:
        return self + -other

    def is_zero(self) -> bool:
        return self.order_count == 0 and self.revenue == 0 and self.quantity == 0


Key = tuple[Any, ...]


@dataclass
class Aggregates:
    """Booked totals per currency, per (hour, currency), per (product, currency), per (customer,
    currency); recognised totals per (confirmation hour, currency); orders per (currency, state).
    Keys iterate sorted, so every writer locks rows in the same order."""

    currency: dict[Key, Totals] = field(default_factory=dict)
    hourly: dict[Key, Totals] = field(default_factory=dict)
    product: dict[Key, Totals] = field(default_factory=dict)
    customer: dict[Key, Totals] = field(default_factory=dict)
    recognised: dict[Key, Totals] = field(default_factory=dict)
    status: dict[Key, Totals] = field(default_factory=dict)

    def kinds(self) -> Iterator[tuple[AggregateKind, dict[Key, Totals]]]:
        yield "currency", self.currency
        yield "hourly", self.hourly
        yield "product", self.product
        yield "customer", self.customer
        yield "recognised", self.recognised
        yield "status", self.status

    def get(self, kind: AggregateKind) -> dict[Key, Totals]:
        return dict(self.kinds())[kind]

    def is_empty(self) -> bool:
        return not any(rows for _, rows in self.kinds())


def bucket_floor(moment: datetime, granularity: Granularity = "hour") -> datetime:
    moment = moment.astimezone(UTC)
    if granularity == "day":
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(minute=0, second=0, microsecond=0)


def _contributions(fact: OrderFact) -> Iterator[tuple[AggregateKind, Key]]:
    """The aggregate rows one order in its current state adds ``Totals(1, amount, qty)`` to."""
    yield "status", (fact.currency, fact.state)
    if fact.booked:
        yield "currency", (fact.currency,)
        yield "hourly", (bucket_floor(fact.created_at), fact.currency)
        yield "product", (fact.product_id, fact.currency)
        yield "customer", (fact.customer_id, fact.currency)
    if fact.recognised:
        yield "recognised", (bucket_floor(fact.changed_at), fact.currency)


def _sums() -> dict[AggregateKind, dict[Key, Totals]]:
    kinds: tuple[AggregateKind, ...] = (
        "currency",
        "hourly",
        "product",
        "customer",
        "recognised",
        "status",
    )
    return {kind: defaultdict(Totals) for kind in kinds}


def _sorted(sums: dict[AggregateKind, dict[Key, Totals]], keep: set[Key]) -> Aggregates:
    return Aggregates(
        **{
            kind: dict(
                sorted(
                    (k, t)
                    for k, t in rows.items()
                    if not t.is_zero() or (kind == "currency" and k in keep)
                )
            )
            for kind, rows in sums.items()
        }
    )


def aggregate(facts: Iterable[OrderFact]) -> Aggregates:
    """What the facts add up to: the rebuild's truth."""
    sums = _sums()
    for fact in facts:
        one = Totals(1, fact.total_amount, fact.quantity)
        for kind, key in _contributions(fact):
            sums[kind][key] += one
    return _sorted(sums, set())


def delta(changes: Iterable[Change]) -> Aggregates:
    """What to add to the stored aggregates for these changes: each order's contribution after
    minus before. Rows that net to zero are left out, except every touched currency row, so the
    summary's ``last_updated`` moves with any applied change."""
    sums = _sums()
    touched: set[Key] = set()
    for change in changes:
        if not change.effective:
            continue
        for fact, sign in ((change.after, 1), (change.before, -1)):
            if fact is None:
                continue
            one = Totals(sign, sign * fact.total_amount, sign * fact.quantity)
            touched.add((fact.currency,))
            for kind, key in _contributions(fact):
                sums[kind][key] += one
    for key in touched:
        sums["currency"][key] += Totals()
    return _sorted(sums, touched)


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
            # A stored all-zero row (every order left it) is the same as no row.
            w, h = _nonzero(want.get(key)), _nonzero(have.get(key))
            if w != h:
                found.append(Difference(kind, key, w, h))
    return found


def _nonzero(totals: Totals | None) -> Totals | None:
    return None if totals is None or totals.is_zero() else totals


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
