"""The order lifecycle through the real service: fulfilment, failures with compensation,
cancellation (and its races), the timeline, optimistic concurrency."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import datetime

import aio_pika
import pytest

from common.testing import wait_until
from order_service.domain.order import OrderStatus
from order_service.unit_of_work import SqlUnitOfWork
from tests.integration.orders.conftest import metric_value
from tests.integration.orders.lifecycle_helpers import (
    FINAL,
    created_events_settled,
    drop_product,
    event_types,
    outbox_payload,
    payment_row,
    place,
    stock_product,
    wait_status,
)

pytestmark = pytest.mark.integration

CONSUMED = "order_service_events_consumed_total"


async def test_an_order_is_paid_then_confirmed_and_its_timeline_lists_each_step(order_client):
    async with order_client() as (client, container):
        created = await place(client)
        assert created["status"] == "created" and created["version"] == 1
        assert [e["status"] for e in created["timeline"]] == ["created"]
        order = await wait_status(client, created["id"], {"confirmed"})
        timeline = order["timeline"]
        assert [e["status"] for e in timeline] == ["created", "paid", "confirmed"]
        assert [e["previous_status"] for e in timeline] == [None, "created", "paid"]
        stamps = [datetime.fromisoformat(e["at"]) for e in timeline]
        assert stamps == sorted(stamps)
        assert order["version"] == 3
        assert await event_types(container, created["id"]) == [
            "OrderCreated",
            "OrderPaid",
            "OrderConfirmed",
        ]
        assert [e["event_id"] for e in timeline] == [
            (await outbox_payload(container, created["id"], t))[0]
            for t in ("OrderCreated", "OrderPaid", "OrderConfirmed")
        ]
        # The cache followed every transition: a cached read says the same as the database.
        again = (await client.get(f"/orders/{created['id']}")).json()
        assert again == order


async def test_a_declined_payment_ends_in_payment_failed_with_no_refund(order_client):
    async with order_client() as (client, container):
        created = await place(client, total_amount="42.13")
        order = await wait_status(client, created["id"], FINAL)
        assert order["status"] == "payment_failed"
        assert order["timeline"][-1]["reason"] == "card_declined"
        payment = await payment_row(container, created["id"])
        assert payment is not None and payment["status"] == "declined"
        assert payment["refund_id"] is None


async def test_a_sold_out_order_is_rejected_and_refunded_once_even_when_redelivered(
    order_client, amqp, test_topology
):
    async with order_client() as (client, container):
        product = await stock_product(container, available=0)
        try:
            created = await place(client, product_id=product)
            order = await wait_status(client, created["id"], FINAL)
            assert order["status"] == "rejected"
            assert [e["status"] for e in order["timeline"]] == ["created", "paid", "rejected"]
            first = await payment_row(container, created["id"])
            assert first is not None and first["status"] == "refunded" and first["refund_id"]

            # The same OrderCreated twice more, as a broker redelivery would bring it.
            before = metric_value(
                container, CONSUMED, {"event_type": "OrderCreated", "outcome": "duplicate"}
            )
            event_id, payload = await outbox_payload(container, created["id"], "OrderCreated")
            channel = await amqp.channel()
            exchange = await channel.get_exchange(test_topology.exchange)
            for _ in range(2):
                await exchange.publish(
                    aio_pika.Message(
                        payload,
                        message_id=event_id,
                        type="OrderCreated",
                        content_type="application/json",
                    ),
                    routing_key="order.created",
                )

            async def both_seen() -> bool:
                labels = {"event_type": "OrderCreated", "outcome": "duplicate"}
                return metric_value(container, CONSUMED, labels) >= before + 2

            await wait_until(both_seen, timeout=10, message="redelivered OrderCreated handled")
            assert await payment_row(container, created["id"]) == first
            # The ledger answered every retry: the gateway was asked once for each.
            assert container.gateway.charge_calls == 1
            assert container.gateway.refund_calls == 1
            assert (await event_types(container, created["id"])).count("OrderRejected") == 1
        finally:
            await drop_product(container, product)


async def test_cancelling_while_the_payment_is_in_flight_refunds_and_ends_cancelled(order_client):
    async with order_client(payment_latency_seconds=0.5) as (client, container):
        created = await place(client)

        async def charging() -> bool:
            return container.gateway.charge_calls >= 1

        await wait_until(charging, timeout=10, message="the charge to start")
        response = await client.post(f"/orders/{created['id']}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"

        async def refunded() -> bool:
            payment = await payment_row(container, created["id"])
            return payment is not None and payment["status"] == "refunded"

        await wait_until(refunded, timeout=10, message="the stray charge to be refunded")
        order = (await client.get(f"/orders/{created['id']}")).json()
        assert order["status"] == "cancelled"
        assert [e["status"] for e in order["timeline"]] == ["created", "cancelled"]
        assert "OrderPaid" not in await event_types(container, created["id"])


async def test_racing_cancellations_against_fulfilment_always_end_consistent(order_client):
    async with order_client(payment_latency_seconds=0.02) as (client, container):
        orders = [await place(client) for _ in range(20)]
        rng = random.Random(7)

        async def cancel_later(order_id: str) -> int:
            await asyncio.sleep(rng.uniform(0, 0.15))  # spread the cancels over the saga
            return (await client.post(f"/orders/{order_id}/cancel")).status_code

        codes = await asyncio.gather(*(cancel_later(o["id"]) for o in orders))

        async def saga_done() -> bool:
            return created_events_settled(container) >= len(orders)

        # A cancel can win while a charge is in flight; the saga refunds it when it finishes.
        await wait_until(saga_done, timeout=20, message="fulfilment to finish every order")
        for order, code in zip(orders, codes, strict=True):
            final = await wait_status(client, order["id"], FINAL)
            payment = await payment_row(container, order["id"])
            if code == 200:
                assert final["status"] == "cancelled"
                # Charged or not, no money is kept for a cancelled order.
                assert payment is None or payment["status"] in ("refunded", "declined")
            else:
                assert code == 409 and final["status"] == "confirmed"
                assert payment is not None and payment["status"] == "charged"
            versions = [e["version"] for e in final["timeline"]]
            assert versions == list(range(1, final["version"] + 1))


async def test_cancelling_a_confirmed_order_is_a_409_problem_and_an_unknown_one_404(order_client):
    async with order_client() as (client, _):
        created = await place(client)
        await wait_status(client, created["id"], {"confirmed"})
        response = await client.post(f"/orders/{created['id']}/cancel")
        assert response.status_code == 409
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "confirmed" in response.json()["detail"]
        missing = await client.post(f"/orders/{uuid.uuid4()}/cancel")
        assert missing.status_code == 404


async def test_concurrent_cancels_of_one_order_succeed_exactly_once(order_client):
    async with order_client(fulfilment_enabled=False) as (client, container):
        created = await place(client)
        codes = await asyncio.gather(
            *(client.post(f"/orders/{created['id']}/cancel") for _ in range(8))
        )
        assert sorted(r.status_code for r in codes) == [200] + [409] * 7
        order = (await client.get(f"/orders/{created['id']}")).json()
        assert [e["status"] for e in order["timeline"]] == ["created", "cancelled"]
        assert await event_types(container, created["id"]) == ["OrderCreated", "OrderCancelled"]


async def test_a_payment_decided_on_a_version_a_cancel_replaced_is_never_committed(order_client):
    """The one-order path (LifecycleService.fulfil) decides ``paid`` from the order it read
    before the charge; a cancel commits while the charge is in flight. Under the row lock the
    version no longer matches: the decision is dropped, not written over the cancel."""
    async with order_client(fulfilment_enabled=False, payment_latency_seconds=0.5) as (
        client,
        container,
    ):
        created = await place(client)
        fulfilling = asyncio.create_task(
            container.lifecycle.fulfil(uuid.UUID(created["id"]), correlation_id="r")
        )

        async def charging() -> bool:
            return container.gateway.charge_calls >= 1

        await wait_until(charging, timeout=10, message="the charge to start")
        response = await client.post(f"/orders/{created['id']}/cancel")
        assert response.status_code == 200, response.text
        assert not fulfilling.done()  # the cancel committed while the charge was in flight

        assert await fulfilling == "cancelled"
        async with SqlUnitOfWork(container.engine) as uow:
            stored = await uow.orders.get(uuid.UUID(created["id"]))
            timeline = await uow.orders.timeline(uuid.UUID(created["id"]))
        assert stored is not None and stored.status is OrderStatus.CANCELLED
        assert stored.order_version == 2
        assert [e.status for e in timeline] == [OrderStatus.CREATED, OrderStatus.CANCELLED]
        assert await event_types(container, created["id"]) == ["OrderCreated", "OrderCancelled"]
        payment = await payment_row(container, created["id"])
        assert payment is not None and payment["status"] == "refunded"


async def test_orders_can_be_listed_by_every_state(order_client):
    async with order_client() as (client, _):
        created = await place(client)
        await wait_status(client, created["id"], {"confirmed"})
        listed = await client.get(
            "/orders", params={"status": "confirmed", "customer_id": created["customer_id"]}
        )
        assert [o["id"] for o in listed.json()["items"]] == [created["id"]]
        for status in ("scheduled", "paid", "payment_failed", "rejected", "cancelled"):
            response = await client.get(
                "/orders", params={"status": status, "customer_id": created["customer_id"]}
            )
            assert response.status_code == 200 and response.json()["items"] == []
        assert (await client.get("/orders", params={"status": "lost"})).status_code == 422
