"""The order state machine and the lifecycle use cases with in-memory fakes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from msgspec.structs import replace

from common.events import OrderCancelledV1, OrderCreatedV1, decode_envelope, decode_event_data
from order_service.adapters.payments import SimulatedPaymentGateway
from order_service.api.schemas import render_order
from order_service.domain.fulfilment import payment_record
from order_service.domain.lifecycle import (
    CANCELLABLE,
    FINAL,
    IllegalTransitionError,
    transition,
)
from order_service.domain.order import NewOrder, Order, OrderStatus
from order_service.lifecycle import (
    LifecycleService,
    OrderNotFoundError,
)
from order_service.order_events import first_event, transition_event
from order_service.ports import ChargeResult
from tests.unit.orders.fakes import FakeCache, FakeStore, FakeTransitionStore

S = OrderStatus
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def new_order(amount: str = "10.00", product: str = "prod-1", **over) -> Order:
    new = NewOrder("c-1", product, 2, Decimal(amount), "USD", **over)
    return Order.create(new, order_id=uuid.uuid4(), now=NOW)


def make(store: FakeStore, gateway=None) -> tuple[LifecycleService, SimulatedPaymentGateway]:
    gateway = gateway or SimulatedPaymentGateway()
    service = LifecycleService(
        FakeTransitionStore(store),
        FakeCache(),
        gateway,
        render=render_order,
        clock=lambda: NOW + timedelta(seconds=1),
    )
    return service, gateway


def seed(store: FakeStore, order: Order) -> Order:
    store.orders[order.order_id] = order
    store.timelines[order.order_id] = []
    return order


def events(store: FakeStore) -> list[str]:
    return [e.event_type for e in store.outbox]


# -- the state machine ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (S.SCHEDULED, S.CREATED),
        (S.SCHEDULED, S.CANCELLED),
        (S.CREATED, S.PAID),
        (S.CREATED, S.PAYMENT_FAILED),
        (S.CREATED, S.CANCELLED),
        (S.PAID, S.CONFIRMED),
        (S.PAID, S.REJECTED),
        (S.PAID, S.CANCELLED),
    ],
)
def test_a_legal_transition_bumps_the_version_and_emits_its_event(start, target):
    order = replace(new_order(), status=start)
    change = transition(order, target, NOW + timedelta(seconds=5))
    assert change.after.status is target
    assert change.after.order_version == order.order_version + 1
    event = transition_event(change)
    assert event.routing_key == f"order.{target.value}"
    assert event.event_type != "OrderCreated" or target is S.CREATED


@pytest.mark.parametrize("final", sorted(FINAL))
def test_no_transition_leaves_a_final_state(final):
    order = replace(new_order(), status=final)
    for target in OrderStatus:
        with pytest.raises(IllegalTransitionError):
            transition(order, target, NOW)


def test_only_scheduled_created_and_paid_orders_can_be_cancelled():
    assert {S.SCHEDULED, S.CREATED, S.PAID} == CANCELLABLE


def test_a_future_order_starts_as_scheduled_with_an_order_scheduled_event():
    order = new_order(scheduled_time=NOW + timedelta(hours=2))
    assert order.status is S.SCHEDULED
    event = first_event(order)
    assert event.event_type == "OrderScheduled" and event.routing_key == "order.scheduled"


def test_the_created_event_after_a_schedule_carries_the_time_and_version():
    order = new_order(scheduled_time=NOW + timedelta(hours=2))
    change = transition(order, S.CREATED, NOW + timedelta(hours=2))
    event = transition_event(change)
    assert isinstance(event, OrderCreatedV1)
    assert event.scheduled_time == NOW + timedelta(hours=2)
    assert event.order_version == 2


# -- fulfilment ---------------------------------------------------------------------------


async def test_a_created_order_is_paid_then_confirmed_with_a_timeline_oldest_first():
    store = FakeStore()
    service, gateway = make(store)
    order = seed(store, new_order())
    assert await service.fulfil(order.order_id, correlation_id="r") == "confirmed"
    assert store.orders[order.order_id].status is S.CONFIRMED
    assert [e.status for e in store.timelines[order.order_id]] == [S.PAID, S.CONFIRMED]
    assert events(store) == ["OrderPaid", "OrderConfirmed"]
    assert store.payments[order.order_id].status == "charged" and len(gateway.charges) == 1


async def test_an_amount_ending_in_13_is_declined_and_the_order_fails_payment():
    store = FakeStore()
    service, _ = make(store)
    order = seed(store, new_order("20.13"))
    assert await service.fulfil(order.order_id, correlation_id="r") == "payment_failed"
    assert store.orders[order.order_id].status is S.PAYMENT_FAILED
    assert events(store) == ["OrderPaymentFailed"]


async def test_a_sold_out_product_rejects_the_order_and_refunds_the_payment_once():
    store = FakeStore()
    store.stock["prod-x"] = 1
    service, gateway = make(store)
    order = seed(store, new_order(product="prod-x"))
    assert await service.fulfil(order.order_id, correlation_id="r") == "rejected"
    assert await service.fulfil(order.order_id, correlation_id="r") == "duplicate"
    assert store.orders[order.order_id].status is S.REJECTED
    assert store.payments[order.order_id].refund_id is not None
    assert len(gateway.refunds) == 1 and store.stock["prod-x"] == 1
    assert events(store) == ["OrderPaid", "OrderRejected"]


async def test_a_redelivered_created_event_never_charges_twice():
    store = FakeStore()
    service, gateway = make(store)
    order = seed(store, new_order())
    await service.fulfil(order.order_id, correlation_id="r")
    await service.fulfil(order.order_id, correlation_id="r")
    assert gateway.charge_calls == 1 and events(store) == ["OrderPaid", "OrderConfirmed"]


async def test_an_order_cancelled_while_its_charge_is_in_flight_is_refunded_and_stays_cancelled():
    store = FakeStore()
    release = asyncio.Event()

    class SlowGateway(SimulatedPaymentGateway):
        async def charge(self, **kw) -> ChargeResult:
            await release.wait()
            return await super().charge(**kw)

    service, gateway = make(store, SlowGateway())
    order = seed(store, new_order())
    fulfilling = asyncio.create_task(service.fulfil(order.order_id, correlation_id="r"))
    await asyncio.sleep(0)
    await service.cancel(order.order_id, correlation_id="r")
    release.set()
    assert await fulfilling == "cancelled"
    assert store.orders[order.order_id].status is S.CANCELLED
    assert store.payments[order.order_id].status == "refunded" and len(gateway.refunds) == 1
    assert events(store) == ["OrderCancelled"]


# -- cancellation -------------------------------------------------------------------------


async def test_cancelling_a_paid_order_refunds_it_and_says_so_in_the_event():
    store = FakeStore()
    service, gateway = make(store)
    order = seed(store, transition(new_order(), S.PAID, NOW, payment_id="pay-1").after)
    store.payments[order.order_id] = payment_record(order, "charged", NOW, payment_id="pay-1")
    await service.cancel(order.order_id, correlation_id="r")
    assert store.orders[order.order_id].status is S.CANCELLED
    cancelled = decode_event_data(decode_envelope(store.outbox[-1].payload))
    assert isinstance(cancelled, OrderCancelledV1)
    assert cancelled.previous_status == "paid" and cancelled.refund_id is not None
    assert store.payments[order.order_id].refund_id == cancelled.refund_id
    assert len(gateway.refunds) == 1


async def test_cancelling_a_confirmed_order_is_an_illegal_transition():
    store = FakeStore()
    service, _ = make(store)
    order = seed(store, new_order())
    await service.fulfil(order.order_id, correlation_id="r")
    with pytest.raises(IllegalTransitionError):
        await service.cancel(order.order_id, correlation_id="r")


async def test_cancelling_an_unknown_order_is_not_found():
    service, _ = make(FakeStore())
    with pytest.raises(OrderNotFoundError):
        await service.cancel(uuid.uuid4(), correlation_id="r")


# -- scheduled orders ---------------------------------------------------------------------


async def test_a_due_scheduled_order_becomes_created_and_a_cancelled_one_never_starts():
    store = FakeStore()
    service, _ = make(store)
    due = seed(store, new_order(scheduled_time=NOW))
    gone = seed(store, new_order(scheduled_time=NOW))
    await service.cancel(gone.order_id, correlation_id="r")
    assert await service.start_scheduled(due.order_id, correlation_id="r") == "started"
    assert await service.start_scheduled(gone.order_id, correlation_id="r") == "cancelled"
    assert store.orders[due.order_id].status is S.CREATED
    assert store.orders[gone.order_id].status is S.CANCELLED
    assert events(store) == ["OrderCancelled", "OrderCreated"]
