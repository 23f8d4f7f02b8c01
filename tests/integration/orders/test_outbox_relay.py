"""The outbox relay against the real RabbitMQ: contract on the wire, outages, several relays."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import uuid
from collections import Counter
from datetime import datetime, timedelta

import aio_pika
import pytest

from common.messaging.topology import TopologySettings, apply_topology
from common.observability import Metrics
from common.testing import TcpProxy, unique_name, wait_until
from order_service.adapters.outbox_relay import OutboxMetrics, OutboxRelay
from order_service.container import build_engine

pytestmark = pytest.mark.integration


def order_body(customer: str) -> dict[str, object]:
    return {"customer_id": customer, "product_id": "p-9", "quantity": 3, "total_amount": "7.77"}


async def drain(channel, queue_name: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    queue = await channel.get_queue(queue_name, ensure=False)
    messages = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        messages.append(message)
    return messages


class Collector:
    """Accumulates messages from a queue, so waits can look for specific orders."""

    def __init__(self, channel, queue_name: str) -> None:
        self.channel, self.queue_name = channel, queue_name
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def order_ids(self) -> Counter[str]:
        self.messages.extend(await drain(self.channel, self.queue_name))
        return Counter(json.loads(m.body)["data"]["order_id"] for m in self.messages)


async def test_order_created_event_follows_the_contract(order_client, amqp, test_topology):
    customer = unique_name("wire")
    async with order_client() as (client, container):
        # The relay declares the test's topology when it connects: read the queues after that.
        assert container.relay is not None and await container.relay.wait_ready(10)
        response = await client.post(
            "/orders", json=order_body(customer), headers={"X-Request-ID": "req-wire-1"}
        )
        order = response.json()
        channel = await amqp.channel()
        for queue in (test_topology.analytics_queue, test_topology.notifications_queue):
            collector = Collector(channel, queue)
            await wait_until(
                functools.partial(_has, collector, order["id"]),
                timeout=10,
                message=f"event in {queue}",
            )
            message = next(
                m
                for m in collector.messages
                if json.loads(m.body)["data"]["order_id"] == order["id"]
            )
            envelope = json.loads(message.body)
            assert set(envelope) == {
                "event_id",
                "event_type",
                "event_version",
                "occurred_at",
                "producer",
                "correlation_id",
                "data",
            }
            assert envelope["event_type"] == "OrderCreated"
            assert envelope["event_version"] == 1
            assert envelope["producer"] == "order-service"
            assert envelope["correlation_id"] == "req-wire-1"
            assert datetime.fromisoformat(envelope["occurred_at"]).utcoffset() == timedelta(0)
            assert envelope["data"] == {
                "order_id": order["id"],
                "customer_id": customer,
                "product_id": "p-9",
                "quantity": 3,
                "total_amount": "7.77",
                "currency": "USD",
                "status": "created",
                "created_at": order["created_at"],
            }
            assert message.message_id == envelope["event_id"]
            assert uuid.UUID(message.message_id)
            assert message.type == "OrderCreated"
            assert message.content_type == "application/json"
            assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert message.timestamp is not None
            assert message.routing_key == "order.created"
            assert message.headers["correlation_id"] == "req-wire-1"
            assert re.fullmatch(
                r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", str(message.headers["traceparent"])
            )
        await channel.close()


async def _has(collector: Collector, order_id: str) -> bool:
    return (await collector.order_ids())[order_id] >= 1


async def test_order_accepted_while_broker_is_down_is_published_when_it_returns(
    order_client, amqp, test_topology
):
    proxy = await TcpProxy("127.0.0.1", 5672).start()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    try:
        # No saga: its OrderPaid/OrderConfirmed would be counted here as extra copies.
        async with order_client(rabbitmq_url=url, fulfilment_enabled=False) as (
            client,
            container,
        ):
            assert await container.relay.wait_ready(10)
            await proxy.cut()
            customer = unique_name("outage")
            accepted = [await client.post("/orders", json=order_body(customer)) for _ in range(3)]
            assert [r.status_code for r in accepted] == [201, 201, 201]
            ids = [r.json()["id"] for r in accepted]

            channel = await amqp.channel()
            collector = Collector(channel, test_topology.analytics_queue)
            counts = await collector.order_ids()
            assert all(counts[i] == 0 for i in ids)

            await proxy.restore()
            await wait_until(
                lambda: _all_present(collector, ids), timeout=30, message="events after outage"
            )
            counts = await collector.order_ids()
            assert all(counts[i] == 1 for i in ids), counts
            await channel.close()
    finally:
        await proxy.close()


async def _all_present(collector: Collector, ids: list[str]) -> bool:
    counts = await collector.order_ids()
    return all(counts[i] >= 1 for i in ids)


async def test_service_starting_with_the_broker_down_accepts_orders_and_publishes_later(
    order_client, amqp, test_topology
):
    proxy = await TcpProxy("127.0.0.1", 5672).start()
    await proxy.cut()
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    try:
        async with order_client(rabbitmq_url=url) as (client, container):
            response = await client.post("/orders", json=order_body(unique_name("cold")))
            assert response.status_code == 201
            ready = await client.get("/health/ready")
            assert ready.json()["checks"]["rabbitmq"] == "down"
            # Its consumers wait for the broker, yet it stays in rotation: it takes orders.
            consumers = {k: v for k, v in ready.json()["checks"].items() if "consumer:" in k}
            assert consumers and set(consumers.values()) == {"down"}, consumers
            assert ready.status_code == 200, ready.json()
            await proxy.restore()
            assert await container.relay.wait_ready(30)
            channel = await amqp.channel()
            collector = Collector(channel, test_topology.analytics_queue)
            await wait_until(
                lambda: _all_present(collector, [response.json()["id"]]),
                timeout=30,
                message="event after broker came up",
            )
            await channel.close()
    finally:
        await proxy.close()


async def test_two_relays_at_once_publish_each_event_once(
    order_client, order_settings, amqp, test_topology: TopologySettings
):
    customer = unique_name("pair")
    setup = await amqp.channel()
    await apply_topology(setup, test_topology.topology())
    await setup.close()
    async with order_client(relay_enabled=False) as (client, _):
        responses = await asyncio.gather(
            *(client.post("/orders", json=order_body(customer)) for _ in range(60))
        )
        ids = [r.json()["id"] for r in responses]

    relays, engines = [], []
    for n in range(2):
        engine = build_engine(order_settings)
        engines.append(engine)
        relay = OutboxRelay(
            engine,
            rabbitmq_url=order_settings.rabbitmq_url,
            topology=test_topology.topology(),
            metrics=OutboxMetrics(Metrics(f"relay{n}")),
            batch_size=7,
            poll_interval=0.05,
        )
        relays.append(relay)
    for relay in relays:
        relay.start()
    channel = await amqp.channel()
    collector = Collector(channel, test_topology.analytics_queue)
    try:
        await wait_until(
            lambda: _all_present(collector, ids), timeout=30, message="all events from two relays"
        )
    finally:
        for relay in relays:
            await relay.stop()
        for engine in engines:
            await engine.dispose()
    counts = await collector.order_ids()
    assert {i: counts[i] for i in ids} == dict.fromkeys(ids, 1)
    published = [relay._metrics.published.labels("OrderCreated")._value.get() for relay in relays]
    assert sum(published) >= len(ids)
    await channel.close()


async def test_committed_events_reach_the_broker_without_reading_the_outbox_back(
    order_client, amqp, test_topology
):
    """Handoff in memory: the claim SELECT runs on the recovery schedule, not once per commit."""
    from sqlalchemy import event

    claims: list[str] = []

    def count_claims(conn, cursor, statement, params, context, executemany) -> None:
        if (
            statement.startswith("SELECT")
            and "FROM outbox" in statement
            and "SKIP LOCKED" in (statement)
        ):
            claims.append(statement)

    async with order_client(fulfilment_enabled=False, relay_poll_interval=30.0) as (
        client,
        container,
    ):
        assert await container.relay.wait_ready(10)
        event.listen(container.engine.sync_engine, "before_cursor_execute", count_claims)
        try:
            channel = await amqp.channel()
            collector = Collector(channel, test_topology.analytics_queue)
            customer = unique_name("handoff")
            ids = []
            for _ in range(10):  # one at a time: every commit wakes the relay on its own
                response = await client.post("/orders", json=order_body(customer))
                assert response.status_code == 201
                ids.append(response.json()["id"])
            await wait_until(
                lambda: _all_present(collector, ids), timeout=10, message="handed-over events"
            )
            await channel.close()
        finally:
            event.remove(container.engine.sync_engine, "before_cursor_execute", count_claims)
    assert len(claims) <= 1  # the recovery pass at start-up; none per commit
