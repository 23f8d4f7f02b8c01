"""The batched fulfilment saga with in-memory fakes: one transaction per batch, a payment
record before every charge, and each order's trouble kept to itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from order_service.adapters.payments import SimulatedPaymentGateway
from order_service.api.schemas import render_order
from order_service.domain.order import NewOrder, Order, OrderStatus
from order_service.lifecycle import LifecycleService
from order_service.ports import ChargeResult, PaymentGatewayError
from order_service.saga import FulfilmentRequest, FulfilmentSaga
from tests.unit.orders.fakes import FakeCache, FakeStore, FakeTransitionStore

S = OrderStatus
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def new_order(amount: str = "10.00", product: str = "prod-1") -> Order:
    new = NewOrder("c-1", product, 2, Decimal(amount), "USD")
    order = Order.create(new, order_id=uuid.uuid4(), now=NOW)
    return order


def make(
    store: FakeStore,
    gateway: SimulatedPaymentGateway | None = None,
    transitions: FakeTransitionStore | None = None,
) -> tuple[FulfilmentSaga, LifecycleService, SimulatedPaymentGateway, FakeCache]:
    gateway = gateway or SimulatedPaymentGateway()
    cache = FakeCache()
    clock = lambda: NOW + timedelta(seconds=1)  # noqa: E731
    transitions = transitions or FakeTransitionStore(store)
    lifecycle = LifecycleService(transitions, cache, gateway, render=render_order, clock=clock)
    saga = FulfilmentSaga(
        transitions,
        cache,
        gateway,
        lifecycle,
        render=render_order,
        clock=clock,
    )
    return saga, lifecycle, gateway, cache


def seed(store: FakeStore, *orders: Order) -> list[FulfilmentRequest]:
    for order in orders:
        store.orders[order.order_id] = order
        store.timelines[order.order_id] = []
    return [FulfilmentRequest(o.order_id, "corr") for o in orders]


async def test_a_batch_of_charged_orders_commits_paid_and_confirmed_in_one_transaction():
    store = FakeStore()
    transitions = FakeTransitionStore(store)
    saga, _, gateway, cache = make(store, transitions=transitions)
    orders = [new_order() for _ in range(20)]
    requests = seed(store, *orders)
    results = await saga.fulfil_batch(requests)
    assert set(results.values()) == {"confirmed"}
    # One commit for the pending payment records, one for every transition of the batch.
    assert transitions.commits == 2
    assert gateway.charge_calls == 20
    assert [e.event_type for e in store.outbox] == ["OrderPaid", "OrderConfirmed"] * 20
    assert all(store.orders[o.order_id].status is S.CONFIRMED for o in orders)
    assert all(store.payments[o.order_id].status == "charged" for o in orders)
    assert all(len(store.timelines[o.order_id]) == 2 for o in orders)
    assert all(o.order_id in cache.data for o in orders)


async def test_a_charge_is_recorded_as_pending_before_the_gateway_is_called():
    store = FakeStore()
    seen: list[str | None] = []

    class WatchingGateway(SimulatedPaymentGateway):
        async def charge(self, **kw) -> ChargeResult:
            record = store.payments.get(uuid.UUID(kw["idempotency_key"]))
            seen.append(record.status if record is not None else None)
            return await super().charge(**kw)

    saga, _, _, _ = make(store, WatchingGateway())
    await saga.fulfil_batch(seed(store, new_order(), new_order()))
    assert seen == ["pending", "pending"]


async def test_a_charge_whose_answer_was_never_stored_is_refunded_when_the_order_is_cancelled():
    store = FakeStore()
    saga, lifecycle, gateway, _ = make(store)
    order = new_order()
    requests = seed(store, order)

    # The gateway charges, then the batch's commit fails: the answer is never stored.
    failing = FulfilmentSaga(
        FakeTransitionStore(store, failing_commits={2}),
        FakeCache(),
        gateway,
        lifecycle,
        render=render_order,
        clock=lambda: NOW,
    )
    try:
        await failing.fulfil_batch(requests)
    except ConnectionError:
        pass
    else:
        raise AssertionError("the batch commit was meant to fail")
    assert len(gateway.charges) == 1 and store.payments[order.order_id].status == "pending"

    # The customer cancels before the event is retried: nothing committed is refunded yet.
    await lifecycle.cancel(order.order_id, correlation_id="r")
    assert store.orders[order.order_id].status is S.CANCELLED

    # The redelivered OrderCreated learns the gateway's answer by its key and refunds it.
    results = await saga.fulfil_batch(requests)
    assert results[order.order_id] == "cancelled"
    assert len(gateway.refunds) == 1
    assert store.payments[order.order_id].status == "refunded"
    assert store.orders[order.order_id].status is S.CANCELLED


async def test_a_gateway_error_retries_only_its_own_order():
    store = FakeStore()
    flaky = new_order()

    class FlakyGateway(SimulatedPaymentGateway):
        async def charge(self, **kw) -> ChargeResult:
            if kw["idempotency_key"] == str(flaky.order_id):
                raise PaymentGatewayError("timeout")
            return await super().charge(**kw)

    saga, _, _, _ = make(store, FlakyGateway())
    healthy = [new_order() for _ in range(3)]
    results = await saga.fulfil_batch(seed(store, flaky, *healthy))
    assert isinstance(results[flaky.order_id], PaymentGatewayError)
    assert store.orders[flaky.order_id].status is S.CREATED
    assert all(results[o.order_id] == "confirmed" for o in healthy)


async def test_declined_and_sold_out_orders_in_one_batch_end_failed_and_rejected_with_refund():
    store = FakeStore()
    store.stock["prod-x"] = 3  # enough for the first order of 2 units only
    saga, _, gateway, _ = make(store)
    first, second = new_order(product="prod-x"), new_order(product="prod-x")
    declined = new_order(amount="10.13")
    results = await saga.fulfil_batch(seed(store, first, second, declined))
    assert results == {
        first.order_id: "confirmed",
        second.order_id: "rejected",
        declined.order_id: "payment_failed",
    }
    assert store.stock["prod-x"] == 1
    assert store.orders[second.order_id].status is S.REJECTED
    assert len(gateway.refunds) == 1 and store.payments[second.order_id].status == "refunded"


async def test_a_redelivered_batch_charges_nobody_twice_and_emits_nothing_new():
    store = FakeStore()
    saga, _, gateway, _ = make(store)
    requests = seed(store, *(new_order() for _ in range(5)))
    await saga.fulfil_batch(requests)
    emitted = len(store.outbox)
    results = await saga.fulfil_batch(requests)
    assert set(results.values()) == {"duplicate"}
    assert len(store.outbox) == emitted
    assert len(gateway.charges) == 5
