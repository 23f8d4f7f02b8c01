"""The service layer with in-memory fakes: no I/O, fast."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from common.events import OrderCreatedV1, decode_envelope, decode_event_data
from order_service.api.schemas import render_order
from order_service.domain.lifecycle import OrderHistory
from order_service.domain.order import NewOrder, OrderStatus
from order_service.domain.scheduling import UnacceptableStartTimeError
from order_service.lifecycle import OrderNotFoundError
from order_service.services import IdempotencyKeyReusedError, OrderService, StoredResponse
from tests.unit.orders.fakes import FakeCache, FakeStore, FakeUnitOfWork, FakeWriter


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def make_service(store: FakeStore, cache: FakeCache | None = None, clock: Clock | None = None):
    notified: list[int] = []
    service = OrderService(
        lambda: FakeUnitOfWork(store),
        cache or FakeCache(),
        FakeWriter(store),
        render=render_order,
        clock=clock or Clock(),
        idempotency_ttl=timedelta(hours=1),
        schedule_horizon=timedelta(days=1),
        on_committed=lambda events: notified.append(len(events)),
    )
    return service, notified


NEW = NewOrder("c-1", "p-1", 2, Decimal("10.50"), "USD")


async def test_created_order_and_its_event_commit_together():
    store = FakeStore()
    service, notified = make_service(store)
    result = await service.create_order(NEW, correlation_id="r-1")
    assert isinstance(result, OrderHistory)
    assert [e.status for e in result.timeline] == [OrderStatus.CREATED]
    assert len(store.orders) == 1 and len(store.outbox) == 1
    event = store.outbox[0]
    envelope = decode_envelope(event.payload)
    data = decode_event_data(envelope)
    assert isinstance(data, OrderCreatedV1)
    assert envelope.correlation_id == "r-1"
    assert data.order_id == result.order.order_id
    assert event.routing_key == "order.created"
    assert notified == [1]


async def test_failed_commit_leaves_neither_order_nor_event_and_does_not_wake_the_relay():
    store = FakeStore()
    store.fail_commit = True
    service, notified = make_service(store)
    with pytest.raises(ConnectionError):
        await service.create_order(NEW, correlation_id="r")
    assert store.orders == {} and store.outbox == [] and notified == []


async def test_same_key_same_body_replays_without_a_second_order():
    store = FakeStore()
    service, _ = make_service(store)
    first = await service.create_order(
        NEW, correlation_id="r", idempotency_key="k", request_hash="h"
    )
    second = await service.create_order(
        NEW, correlation_id="r", idempotency_key="k", request_hash="h"
    )
    assert isinstance(first, OrderHistory) and isinstance(second, StoredResponse)
    assert second.body == render_order(first.order, first.timeline)
    assert (second.status_code, second.order_id) == (201, str(first.order.order_id))
    assert len(store.orders) == 1 and len(store.outbox) == 1


async def test_same_key_other_body_is_refused():
    store = FakeStore()
    service, _ = make_service(store)
    await service.create_order(NEW, correlation_id="r", idempotency_key="k", request_hash="h1")
    with pytest.raises(IdempotencyKeyReusedError):
        await service.create_order(NEW, correlation_id="r", idempotency_key="k", request_hash="h2")


async def test_key_is_forgotten_after_its_ttl():
    store, clock = FakeStore(), Clock()
    service, _ = make_service(store, clock=clock)
    await service.create_order(NEW, correlation_id="r", idempotency_key="k", request_hash="h")
    clock.now += timedelta(hours=2)
    again = await service.create_order(
        NEW, correlation_id="r", idempotency_key="k", request_hash="h"
    )
    assert isinstance(again, OrderHistory) and len(store.orders) == 2


async def test_get_reads_the_database_on_a_miss_and_then_the_cache():
    store, cache = FakeStore(), FakeCache()
    service, _ = make_service(store, cache)
    created = await service.create_order(NEW, correlation_id="r")
    assert isinstance(created, OrderHistory)
    cache.data.clear()
    order_id = next(iter(store.orders))
    body = await service.get_order(order_id)
    assert json.loads(body)["id"] == str(created.order.order_id)
    assert order_id in cache.data


async def test_get_works_when_the_cache_is_down():
    store, cache = FakeStore(), FakeCache(down=True)
    service, _ = make_service(store, cache)
    await service.create_order(NEW, correlation_id="r")
    order_id = next(iter(store.orders))
    assert json.loads(await service.get_order(order_id))["id"] == str(order_id)


async def test_an_unknown_order_is_not_found():
    service, _ = make_service(FakeStore())
    with pytest.raises(OrderNotFoundError):
        await service.get_order(uuid.uuid4())


@pytest.mark.parametrize(
    "offset",
    [timedelta(0), timedelta(minutes=-1), timedelta(days=1, seconds=1)],
    ids=["now", "past", "beyond-horizon"],
)
async def test_a_start_time_outside_the_horizon_is_refused_before_anything_is_stored(offset):
    store, clock = FakeStore(), Clock()
    service, notified = make_service(store, clock=clock)
    new = NewOrder("c-1", "p-1", 2, Decimal("10.50"), "USD", scheduled_time=clock.now + offset)
    with pytest.raises(UnacceptableStartTimeError):
        await service.create_order(new, correlation_id="r", idempotency_key="k")
    assert store.orders == {} and store.keys == {} and notified == []


async def test_a_start_time_within_the_horizon_makes_a_scheduled_order():
    store, clock = FakeStore(), Clock()
    service, _ = make_service(store, clock=clock)
    new = NewOrder(
        "c-1", "p-1", 2, Decimal("10.50"), "USD", scheduled_time=clock.now + timedelta(days=1)
    )
    result = await service.create_order(new, correlation_id="r")
    assert isinstance(result, OrderHistory) and result.order.status is OrderStatus.SCHEDULED


async def test_a_failed_batch_answers_every_order_written_row_by_row():
    import asyncio

    from order_service.adapters.group_commit import GroupCommitOrderWriter

    class FlakyWriter(GroupCommitOrderWriter):
        def __init__(self) -> None:
            super().__init__(engine=None, max_batch=8, writers=1)  # type: ignore[arg-type]
            self.written: list[str] = []

        async def _insert(self, batch):
            if len(batch) > 1 or batch[0].order == "bad":
                raise ValueError("rejected")
            self.written.append(batch[0].order)

    writer = FlakyWriter()
    results = await asyncio.wait_for(
        asyncio.gather(
            *(writer.write(o, None) for o in ("a", "bad", "b")),  # type: ignore[arg-type]
            return_exceptions=True,
        ),
        5,
    )
    await writer.stop()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], ValueError)
    assert sorted(writer.written) == ["a", "b"]
