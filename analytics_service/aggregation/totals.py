"""The write model: what the facts add up to, the delta a batch of changes adds, and how
stored aggregates differ from the facts (the rebuild)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from analytics_service.aggregation.facts import Change, OrderFact
from analytics_service.aggregation.money import money

__all__ = [
    "AggregateKind",
    "Aggregates",
    "Difference",
    "Key",
    "Totals",
    "aggregate",
    "bucket_floor",
    "delta",
    "diff",
]

AggregateKind = Literal["currency", "hourly", "product", "customer", "recognised", "status"]
Granularity = Literal["hour", "day"]


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
    """The aggregate rows one order in its current state adds ``Totals(1, amount, qty)`` to.

    The rebuild sums the same in SQL (adapters/rebuilder.py); a test holds the two equal."""
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
