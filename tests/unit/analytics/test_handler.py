from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from analytics_service.handlers import AnalyticsHandler
from analytics_service.metrics import ApplyMetrics
from analytics_service.ports import StoreConflictError, StoreUnavailableError
from common.messaging.outcomes import Ack, Park, Retry, Unavailable
from common.observability import Metrics
from tests.unit.analytics.fakes import FakeInvalidator, FakeStore, order_delivery

NOW = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)


def _handler(
    store: FakeStore, invalidator: FakeInvalidator | None = None, metrics: Metrics | None = None
) -> AnalyticsHandler:
    return AnalyticsHandler(
        store,
        invalidator or FakeInvalidator(),
        ApplyMetrics(metrics or Metrics("t")),
        consumer="analytics",
        clock=lambda: NOW,
        conflict_retries=2,
        conflict_backoff=0,
    )


async def test_new_events_are_applied_and_the_summary_invalidated_once_per_batch():
    store, invalidator = FakeStore(), FakeInvalidator()
    outcomes = await _handler(store, invalidator).handle_batch(
        [order_delivery(), order_delivery(amount="2.50")]
    )
    assert outcomes == [Ack("applied"), Ack("applied")]
    assert store.aggregates().currency[("USD",)].revenue == Decimal("12.50")
    assert invalidator.calls == 1


async def test_redelivered_event_is_counted_once():
    store = FakeStore()
    delivery = order_delivery()
    handler = _handler(store)
    assert await handler.handle_batch([delivery]) == [Ack("applied")]
    assert await handler.handle_batch([delivery]) == [Ack("duplicate")]
    assert store.aggregates().currency[("USD",)].order_count == 1


async def test_the_same_event_twice_in_one_batch_is_applied_once():
    store = FakeStore()
    delivery = order_delivery()
    outcomes = await _handler(store).handle_batch([delivery, delivery])
    assert outcomes == [Ack("applied"), Ack("duplicate")]


async def test_a_second_event_for_an_already_recorded_order_changes_nothing():
    store = FakeStore()
    order_id = uuid.uuid4()
    handler = _handler(store)
    await handler.handle_batch([order_delivery(order_id=order_id)])
    assert await handler.handle_batch([order_delivery(order_id=order_id)]) == [Ack("duplicate")]
    assert store.aggregates().currency[("USD",)].order_count == 1


async def test_an_event_that_cannot_be_a_fact_is_parked_and_the_rest_applied():
    store = FakeStore()
    outcomes = await _handler(store).handle_batch(
        [order_delivery(currency="usd"), order_delivery(product_id="p" * 65), order_delivery()]
    )
    assert isinstance(outcomes[0], Park) and "currency" in outcomes[0].error
    assert isinstance(outcomes[1], Park) and "product_id" in outcomes[1].error
    assert outcomes[2] == Ack("applied")


async def test_database_unavailable_defers_the_whole_batch_without_spending_an_attempt():
    store, invalidator = FakeStore(), FakeInvalidator()
    store.fail_with = [StoreUnavailableError("connection refused")]
    outcomes = await _handler(store, invalidator).handle_batch([order_delivery(), order_delivery()])
    assert all(isinstance(o, Unavailable) and o.reason == "database_unavailable" for o in outcomes)
    assert invalidator.calls == 0 and not store.facts


async def test_a_deadlock_is_rerun_at_once_and_counted():
    store, metrics = FakeStore(), Metrics("t")
    store.fail_with = [StoreConflictError("deadlock"), StoreConflictError("deadlock")]
    outcomes = await _handler(store, metrics=metrics).handle_batch([order_delivery()])
    assert outcomes == [Ack("applied")]
    assert metrics.registry.get_sample_value("t_apply_conflicts_total") == 2


async def test_deadlocks_that_persist_go_to_a_retry_tier():
    store = FakeStore()
    store.fail_with = [StoreConflictError("deadlock")] * 3
    outcomes = await _handler(store).handle_batch([order_delivery()])
    assert isinstance(outcomes[0], Retry) and outcomes[0].reason == "database_conflict"


async def test_an_unexpected_batch_failure_is_retried_event_by_event():
    store = FakeStore()
    store.fail_with = [RuntimeError("boom"), RuntimeError("still boom")]
    outcomes = await _handler(store).handle_batch([order_delivery(), order_delivery()])
    assert isinstance(outcomes[0], Retry) and outcomes[0].reason == "apply_failed"
    assert outcomes[1] == Ack("applied")


async def test_applying_records_lag_revenue_and_order_metrics():
    metrics = Metrics("t")
    await _handler(FakeStore(), metrics=metrics).handle_batch(
        [order_delivery(amount="4.00", currency="EUR")]
    )
    get = metrics.registry.get_sample_value
    assert get("t_orders_applied_total", {"currency": "EUR"}) == 1
    assert get("t_revenue_total", {"currency": "EUR"}) == 4.0
    assert get("t_consumer_lag_seconds") == 5.0


async def test_an_event_that_breaks_the_fold_is_parked_alone_and_its_neighbours_applied():
    store = FakeStore()
    # Passes the contract (a zone-aware timestamp) but has no UTC equivalent: OverflowError.
    poison = order_delivery(created_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
    outcomes = await _handler(store).handle_batch([order_delivery(), poison, order_delivery()])
    assert outcomes[0] == Ack("applied") and outcomes[2] == Ack("applied")
    assert isinstance(outcomes[1], Park) and outcomes[1].reason == "invalid_payload"
    assert "OverflowError" in outcomes[1].error
    assert len(store.facts) == 2


async def test_an_event_the_database_rejects_is_set_aside_alone_in_a_few_transactions():
    store = FakeStore()
    deliveries = [order_delivery() for _ in range(64)]
    store.rejects = {deliveries[37].envelope.event_id}
    outcomes = await _handler(store).handle_batch(deliveries)
    assert isinstance(outcomes[37], Retry) and outcomes[37].reason == "apply_failed"
    assert all(o == Ack("applied") for i, o in enumerate(outcomes) if i != 37)
    assert len(store.facts) == 63
    # Halving the failed batch, not one transaction per event.
    assert store.calls <= 16
