"""Order lifecycle in analytics: booked vs recognised revenue, exactly once, in any order."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from analytics_service.aggregation import (
    Change,
    Totals,
    aggregate,
    delta,
    diff,
)
from analytics_service.event_facts import fact_from_event
from analytics_service.handlers import AnalyticsHandler
from analytics_service.metrics import ApplyMetrics
from analytics_service.ports import SummaryRows
from analytics_service.read_models import summary_response
from common.events import OutgoingEnvelope, decode_envelope, decode_event_data, encode_envelope
from common.messaging.consumer import Delivery
from common.messaging.outcomes import Ack, Outcome
from common.observability import Metrics
from tests.unit.analytics.fakes import FakeInvalidator, FakeStore
from tests.unit.analytics.lifecycle import PATHS, Order, lifecycle, shuffled_with_duplicates

CREATED = datetime(2026, 3, 1, 12, 10, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)


def _delivery(envelope: OutgoingEnvelope) -> Delivery:
    decoded = decode_envelope(encode_envelope(envelope))
    message: Any = object()
    return Delivery(message=message, attempt=1, envelope=decoded, event=decode_event_data(decoded))


def _handler(store: FakeStore, metrics: Metrics | None = None) -> AnalyticsHandler:
    return AnalyticsHandler(
        store,
        FakeInvalidator(),
        ApplyMetrics(metrics or Metrics("t")),
        consumer="analytics",
        clock=lambda: NOW,
        conflict_retries=0,
        conflict_backoff=0,
    )


def _order(path: str, amount: str = "10.00", currency: str = "USD") -> Order:
    return lifecycle(
        path,
        customer_id="c1",
        product_id="p1",
        currency=currency,
        amount=amount,
        created_at=CREATED,
    )


async def _apply(
    store: FakeStore, envelopes: list[OutgoingEnvelope], batch: int = 1
) -> list[Outcome]:
    handler, outcomes = _handler(store), list[Outcome]()
    for at in range(0, len(envelopes), batch):
        chunk = envelopes[at : at + batch]
        outcomes += await handler.handle_batch([_delivery(e) for e in chunk])
    return outcomes


def test_every_lifecycle_event_becomes_a_fact_in_its_state_with_its_version():
    order = _order("rejected")
    facts = [fact_from_event(_delivery(e).envelope, _delivery(e).event) for e in order.events]
    assert [(f.state, f.order_version) for f in facts] == [
        ("created", 1),
        ("paid", 2),
        ("rejected", 3),
    ]


async def test_a_confirmed_order_is_booked_once_and_recognised_in_its_confirmation_hour():
    store = FakeStore()
    order = _order("confirmed", amount="12.50")
    outcomes = await _apply(store, list(order.events))
    assert outcomes == [Ack("applied")] * 3
    totals = store.aggregates()
    assert totals.currency == {("USD",): Totals(1, Decimal("12.50"), 1)}
    confirmed_hour = CREATED.replace(minute=0)
    assert totals.recognised == {(confirmed_hour, "USD"): Totals(1, Decimal("12.50"), 1)}
    assert totals.status == {("USD", "confirmed"): Totals(1, Decimal("12.50"), 1)}


async def test_cancelled_rejected_and_failed_orders_are_taken_out_of_booked_revenue():
    store = FakeStore()
    orders = [_order(p) for p in ("cancelled_paid", "rejected", "payment_failed", "created")]
    await _apply(store, [e for o in orders for e in o.events])
    totals = store.aggregates()
    assert totals.currency == {("USD",): Totals(1, Decimal("10.00"), 1)}
    assert totals.product == {("p1", "USD"): Totals(1, Decimal("10.00"), 1)}
    assert totals.recognised == {}
    assert {k[1]: t.order_count for k, t in totals.status.items()} == {
        "cancelled": 1,
        "rejected": 1,
        "payment_failed": 1,
        "created": 1,
    }


async def test_a_cancellation_applied_before_its_creation_never_books_the_order():
    store = FakeStore()
    created, cancelled = _order("cancelled_unpaid").events
    outcomes = await _apply(store, [cancelled, created])
    assert outcomes == [Ack("applied"), Ack("superseded")]
    totals = store.aggregates()
    assert totals.currency == {} and totals.hourly == {}
    assert totals.status == {("USD", "cancelled"): Totals(1, Decimal("10.00"), 1)}


async def test_a_scheduled_order_is_not_booked_until_it_is_created():
    store = FakeStore()
    scheduled, created, *_ = _order("scheduled_confirmed").events
    await _apply(store, [scheduled])
    assert store.aggregates().currency == {}
    await _apply(store, [created])
    assert store.aggregates().currency == {("USD",): Totals(1, Decimal("10.00"), 1)}


async def test_final_totals_do_not_depend_on_delivery_order_duplicates_or_batching():
    rng = random.Random(6)
    orders = [
        _order(path, amount=f"{n + 1}.25", currency=rng.choice(["USD", "EUR"]))
        for n, path in enumerate(list(PATHS) * 5)
    ]
    in_order = FakeStore()
    await _apply(in_order, [e for o in orders for e in o.events], batch=7)
    for seed in range(3):
        shuffled = FakeStore()
        events = shuffled_with_duplicates(orders, random.Random(seed))
        await _apply(shuffled, events, batch=random.Random(seed).randint(1, 20))
        assert diff(in_order.aggregates(), shuffled.aggregates()) == []
    booked = [o for o in orders if o.final_state in ("created", "paid", "confirmed")]
    for currency in ("USD", "EUR"):
        mine = [o for o in booked if o.currency == currency]
        assert in_order.aggregates().currency[(currency,)] == Totals(
            len(mine), sum((o.amount for o in mine), Decimal(0)), len(mine)
        )


def test_the_deltas_of_a_path_add_up_to_the_aggregate_of_its_final_state():
    order = _order("cancelled_paid")
    facts = [fact_from_event(_delivery(e).envelope, _delivery(e).event) for e in order.events]
    changes = [Change(after, before) for before, after in zip([None, *facts], facts, strict=False)]
    summed = delta(changes)
    assert diff(aggregate([facts[-1]]), summed) == []
    # Every order left the booked rows: they net to zero, and zero equals no row.
    assert summed.product == {} and summed.currency == {("USD",): Totals()}


async def test_lifecycle_outcomes_are_counted_in_metrics():
    metrics = Metrics("t")
    store = FakeStore()
    handler = _handler(store, metrics)
    events = [*_order("confirmed", "3.00", "EUR").events, *_order("rejected", "2.00").events]
    await handler.handle_batch([_delivery(e) for e in events])
    get = metrics.registry.get_sample_value
    assert get("t_revenue_recognised_total", {"currency": "EUR"}) == 3.0
    assert get("t_revenue_reversed_total", {"currency": "USD", "status": "rejected"}) == 2.0
    assert get("t_revenue_total", {"currency": "USD"}) == 2.0
    assert get("t_order_transitions_total", {"status": "rejected"}) == 1
    assert get("t_order_transitions_total", {"status": "paid"}) == 2


def test_the_summary_exposes_booked_recognised_and_orders_by_status():
    rows = SummaryRows(
        {"USD": Totals(2, Decimal("30.00"), 2)},
        None,
        {
            ("USD", "created"): Totals(1, Decimal("10.00"), 1),
            ("USD", "confirmed"): Totals(1, Decimal("20.00"), 1),
            ("USD", "cancelled"): Totals(1, Decimal("5.00"), 1),
            ("EUR", "rejected"): Totals(1, Decimal("7.00"), 1),
            ("EUR", "paid"): Totals(0, Decimal(0), 0),
        },
    )
    body = summary_response(rows)
    assert (body.total_orders, body.total_revenue) == (2, {"USD": "30.00"})
    assert (body.recognised_orders, body.recognised_revenue) == (1, {"USD": "20.00"})
    assert (body.cancelled_orders, body.rejected_orders, body.payment_failed_orders) == (1, 1, 0)
    assert body.orders_by_status == {"created": 1, "confirmed": 1, "rejected": 1, "cancelled": 1}
    eur = next(c for c in body.by_currency if c.currency == "EUR")
    assert (eur.total_orders, eur.total_revenue, eur.rejected_orders) == (0, "0.00", 1)


def test_orders_by_state_add_up_to_one_per_order():
    orders = [_order(p) for p in PATHS]
    facts = [
        fact_from_event(_delivery(o.events[-1]).envelope, _delivery(o.events[-1]).event)
        for o in orders
    ]
    counts = Counter({k[1]: t.order_count for k, t in aggregate(facts).status.items()})
    assert sum(counts.values()) == len(orders)
