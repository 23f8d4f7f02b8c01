"""The auditor's own recount of the analytics totals from the per-order facts.

Written here, not imported from analytics_service, so a wrong rule in the service cannot make
its totals and this recount agree by construction. Every total is a sum of per-order
contributions that depend only on the order's latest state (docs/lifecycle.md):

- booked (per currency, per (created hour, currency), per (product, currency), per (customer,
  currency)): orders now ``created``, ``paid`` or ``confirmed``;
- recognised (per (hour of confirmation, currency)): orders now ``confirmed``;
- status (per (currency, state)): every order, by its latest state.

Pure: the comparisons (stored tables vs recount, API answers vs recount, facts vs the accepted
orders) are unit-tested without a database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

__all__ = [
    "KINDS",
    "AcceptedFacts",
    "Fact",
    "Kind",
    "Mismatch",
    "Tally",
    "Totals",
    "compare_facts",
    "compare_revenue",
    "compare_summary",
    "compare_tables",
    "compare_top",
    "hour_key",
    "recount",
]

Kind = Literal["currency", "hourly", "product", "customer", "recognised", "status"]
KINDS: tuple[Kind, ...] = ("currency", "hourly", "product", "customer", "recognised", "status")
LIFECYCLE_STATES = frozenset(
    {"scheduled", "created", "paid", "confirmed", "payment_failed", "rejected", "cancelled"}
)
BOOKED = frozenset({"created", "paid", "confirmed"})
RECOGNISED = frozenset({"confirmed"})
Key = tuple[str, ...]


@dataclass(frozen=True)
class Fact:
    """One order as analytics recorded it (a row of ``order_facts``)."""

    order_id: str
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    currency: str
    status: str
    created_at: datetime
    status_changed_at: datetime | None = None

    @property
    def state(self) -> str:
        # Facts written before the lifecycle existed hold the producer's text ("PENDING").
        return self.status if self.status in LIFECYCLE_STATES else "created"


@dataclass(frozen=True)
class Tally:
    orders: int = 0
    revenue: Decimal = Decimal(0)
    quantity: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.orders + other.orders,
            self.revenue + other.revenue,
            self.quantity + other.quantity,
        )

    def is_zero(self) -> bool:
        return self.orders == 0 and self.revenue == 0 and self.quantity == 0

    def __str__(self) -> str:
        return f"{self.orders} orders / {self.revenue.normalize():f} / qty {self.quantity}"


@dataclass
class Totals:
    """Tallies by kind and key; keys are strings (an hour is ``YYYY-MM-DDTHH:00:00``, UTC)."""

    tables: dict[Kind, dict[Key, Tally]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )

    def __getitem__(self, kind: Kind) -> dict[Key, Tally]:
        return self.tables[kind]

    def nonzero(self, kind: Kind) -> dict[Key, Tally]:
        return {k: t for k, t in self.tables[kind].items() if not t.is_zero()}


def hour_key(moment: datetime) -> str:
    """The UTC hour a moment falls in; naive datetimes (MySQL DATETIME) are taken as UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(minute=0, second=0, microsecond=0).isoformat()


def _contributions(fact: Fact) -> Iterator[tuple[Kind, Key]]:
    yield "status", (fact.currency, fact.state)
    if fact.state in BOOKED:
        yield "currency", (fact.currency,)
        yield "hourly", (hour_key(fact.created_at), fact.currency)
        yield "product", (fact.product_id, fact.currency)
        yield "customer", (fact.customer_id, fact.currency)
    if fact.state in RECOGNISED:
        yield "recognised", (hour_key(fact.status_changed_at or fact.created_at), fact.currency)


def recount(facts: Iterable[Fact]) -> Totals:
    sums: dict[Kind, dict[Key, Tally]] = {kind: defaultdict(Tally) for kind in KINDS}
    for fact in facts:
        one = Tally(1, fact.total_amount, fact.quantity)
        for kind, key in _contributions(fact):
            sums[kind][key] += one
    return Totals({kind: dict(rows) for kind, rows in sums.items()})


@dataclass(frozen=True)
class Mismatch:
    where: str  # "stored currency", "summary", "top-products", ...
    key: str
    actual: str
    expected: str

    def describe(self) -> str:
        return f"{self.where} {self.key}: reported {self.actual}, recount says {self.expected}"


def compare_tables(expected: Totals, stored: Totals) -> list[Mismatch]:
    """Every aggregate row whose stored tally differs from the recount (zero == absent)."""
    out: list[Mismatch] = []
    for kind in KINDS:
        want, have = expected.nonzero(kind), stored.nonzero(kind)
        for key in sorted(set(want) | set(have)):
            if want.get(key) != have.get(key):
                out.append(
                    Mismatch(
                        f"stored {kind}",
                        "/".join(key),
                        str(have.get(key, "nothing")),
                        str(want.get(key, "nothing")),
                    )
                )
    return out


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, float):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _check(out: list[Mismatch], where: str, key: str, actual: Any, expected: Any) -> None:
    same = _dec(actual) == expected if isinstance(expected, Decimal) else actual == expected
    if not same:
        out.append(Mismatch(where, key, repr(actual), repr(expected)))


def _by_currency(rows: Mapping[Key, Tally], at: int = 0) -> dict[str, Tally]:
    out: dict[str, Tally] = defaultdict(Tally)
    for key, tally in rows.items():
        out[key[at]] += tally
    return dict(out)


def compare_summary(body: Mapping[str, Any], expected: Totals) -> list[Mismatch]:
    """GET /analytics/summary against the recount: totals, per currency, per status."""
    out: list[Mismatch] = []
    booked = {k[0]: t for k, t in expected.nonzero("currency").items()}
    recognised = _by_currency(expected.nonzero("recognised"), at=1)
    states: dict[str, dict[str, int]] = defaultdict(dict)
    for (currency, state), tally in expected.nonzero("status").items():
        if tally.orders:
            states[currency][state] = tally.orders
    _check(
        out,
        "summary",
        "total_orders",
        body.get("total_orders"),
        sum(t.orders for t in booked.values()),
    )
    revenue = body.get("total_revenue") or {}
    _check(
        out,
        "summary",
        "total_revenue currencies",
        sorted(revenue),
        sorted(c for c, t in booked.items() if t.orders),
    )
    for currency, tally in booked.items():
        _check(out, "summary", f"total_revenue {currency}", revenue.get(currency), tally.revenue)
    _check(
        out,
        "summary",
        "recognised_orders",
        body.get("recognised_orders"),
        sum(t.orders for t in recognised.values()),
    )
    all_states: dict[str, int] = defaultdict(int)
    for mine in states.values():
        for state, n in mine.items():
            all_states[state] += n
    _check(
        out,
        "summary",
        "orders_by_status",
        dict(body.get("orders_by_status") or {}),
        dict(all_states),
    )
    for state, field_name in (
        ("cancelled", "cancelled_orders"),
        ("rejected", "rejected_orders"),
        ("payment_failed", "payment_failed_orders"),
    ):
        _check(out, "summary", field_name, body.get(field_name), all_states.get(state, 0))
    per = {str(c.get("currency")): c for c in body.get("by_currency") or []}
    _check(out, "summary", "by_currency currencies", sorted(per), sorted(set(booked) | set(states)))
    for currency, entry in per.items():
        tally = booked.get(currency, Tally())
        where = f"summary by_currency {currency}"
        _check(out, where, "total_orders", entry.get("total_orders"), tally.orders)
        _check(out, where, "total_revenue", entry.get("total_revenue"), tally.revenue)
        rec = recognised.get(currency, Tally())
        _check(out, where, "recognised_orders", entry.get("recognised_orders"), rec.orders)
        _check(out, where, "recognised_revenue", entry.get("recognised_revenue"), rec.revenue)
        _check(
            out,
            where,
            "orders_by_status",
            dict(entry.get("orders_by_status") or {}),
            states.get(currency, {}),
        )
    return out


def compare_revenue(body: Mapping[str, Any], expected: Totals) -> list[Mismatch]:
    """GET /analytics/revenue?granularity=hour (no currency filter): every bucket it lists."""
    out: list[Mismatch] = []
    booked: dict[str, dict[str, Tally]] = defaultdict(dict)
    for (hour, currency), tally in expected.nonzero("hourly").items():
        booked[hour][currency] = tally
    recognised: dict[str, dict[str, Tally]] = defaultdict(dict)
    for (hour, currency), tally in expected.nonzero("recognised").items():
        recognised[hour][currency] = tally
    listed = set()
    for bucket in body.get("buckets") or []:
        start = bucket.get("start")
        hour = hour_key(datetime.fromisoformat(str(start).replace("Z", "+00:00")))
        listed.add(hour)
        where = f"revenue bucket {hour}"
        want = booked.get(hour, {})
        _check(
            out,
            where,
            "order_count",
            bucket.get("order_count"),
            sum(t.orders for t in want.values()),
        )
        got = {c: _dec(v) for c, v in (bucket.get("revenue") or {}).items() if _dec(v)}
        _check(out, where, "revenue", got, {c: t.revenue for c, t in want.items() if t.revenue})
        rec = recognised.get(hour, {})
        _check(
            out,
            where,
            "recognised_count",
            bucket.get("recognised_count", 0),
            sum(t.orders for t in rec.values()),
        )
        got_rec = {
            c: _dec(v) for c, v in (bucket.get("recognised_revenue") or {}).items() if _dec(v)
        }
        _check(
            out,
            where,
            "recognised_revenue",
            got_rec,
            {c: t.revenue for c, t in rec.items() if t.revenue},
        )
    for hour in sorted((set(booked) | set(recognised)) - listed):
        if _in_range(hour, body):
            out.append(Mismatch("revenue", hour, "no bucket", "a bucket with orders"))
    return out


def _in_range(hour: str, body: Mapping[str, Any]) -> bool:
    try:
        start = hour_key(datetime.fromisoformat(str(body["from"]).replace("Z", "+00:00")))
        end = hour_key(datetime.fromisoformat(str(body["to"]).replace("Z", "+00:00")))
    except (KeyError, ValueError):
        return True
    return start <= hour < end


def compare_top(
    name: str, id_field: str, body: Mapping[str, Any], expected: Mapping[Key, Tally], limit: int
) -> list[Mismatch]:
    """A top list (no currency filter) against the recount: each listed entry's tally is exact,
    and the listed revenues are the ``limit`` highest ones (ties may list either entry)."""
    out: list[Mismatch] = []
    booked = {k: t for k, t in expected.items() if t.orders > 0}
    items = list(body.get("items") or [])
    _check(out, name, "length", len(items), min(limit, len(booked)))
    for item in items:
        key = (str(item.get(id_field)), str(item.get("currency")))
        tally = booked.get(key)
        actual = Tally(
            int(item.get("order_count", 0)),
            _dec(item.get("revenue")) or Decimal(0),
            int(item.get("quantity", 0)),
        )
        if tally != actual:
            out.append(Mismatch(name, "/".join(key), str(actual), str(tally or "not booked")))
    top = sorted((t.revenue for t in booked.values()), reverse=True)[:limit]
    listed = [_dec(i.get("revenue")) for i in items]
    _check(out, name, "revenues in rank order", listed, top)
    return out


@dataclass(frozen=True)
class AcceptedFacts:
    """What the order service accepted, in the fields analytics copies into its fact."""

    order_id: str
    total_amount: Decimal
    currency: str
    customer_id: str | None = None
    product_id: str | None = None
    quantity: int | None = None


def compare_facts(
    accepted: Sequence[AcceptedFacts], facts: Mapping[str, Fact], *, exclusive: bool
) -> tuple[list[str], list[Mismatch], list[str]]:
    """(accepted orders without a fact, fields that differ, facts of no accepted order - only
    counted when the partition is ``exclusive`` to these orders)."""
    missing: list[str] = []
    differ: list[Mismatch] = []
    for order in accepted:
        fact = facts.get(order.order_id)
        if fact is None:
            missing.append(order.order_id)
            continue
        pairs: list[tuple[str, Any, Any]] = [
            ("total_amount", fact.total_amount, order.total_amount),
            ("currency", fact.currency, order.currency),
            ("customer_id", fact.customer_id, order.customer_id),
            ("product_id", fact.product_id, order.product_id),
            ("quantity", fact.quantity, order.quantity),
        ]
        for name, have, want in pairs:
            if want is not None and have != want:
                differ.append(Mismatch("fact", f"{order.order_id} {name}", repr(have), repr(want)))
    unexpected: list[str] = []
    if exclusive:
        ids = {o.order_id for o in accepted}
        unexpected = sorted(oid for oid in facts if oid not in ids)
    return missing, differ, unexpected
