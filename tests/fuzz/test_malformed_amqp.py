"""Malformed AMQP messages of every kind fed to each consumer: each is parked in that consumer's
DLQ with the reason in its headers, the consumer keeps going (a real order still flows through
afterwards), and nothing is requeued in a loop (work queue and retry tiers end empty)."""

from __future__ import annotations

import json

import aio_pika
import httpx
import pytest

from common.testing import wait_until
from tests.e2e.system import RABBITMQ_URL, RunningSystem
from tests.faults.poison import (
    HUGE_BODY_BYTES,
    consumer_queues,
    park_summary,
    parked_messages,
    poison_messages,
    publish_poison,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


async def test_every_kind_of_malformed_message_is_parked_with_a_reason_and_consumers_go_on() -> (
    None
):
    poison = poison_messages()
    expected = {p.kind for p in poison}
    async with RunningSystem() as system:
        topology = system.topology.topology()
        connection = await aio_pika.connect_robust(RABBITMQ_URL)
        async with connection, httpx.AsyncClient(timeout=10) as client:
            channel = await connection.channel(publisher_confirms=True)
            await publish_poison(channel, topology.exchange, poison)

            for spec in consumer_queues(system):
                parked: dict[str, dict[str, object]] = {}

                async def all_parked(dlq: str = spec.dlq, parked: dict = parked) -> bool:
                    parked.update(park_summary(await parked_messages(channel, dlq)))
                    return expected <= set(parked)

                await wait_until(all_parked, timeout=30, interval=0.3, message=spec.dlq)
                print(f"[malformed:{spec.dlq}] {json.dumps(parked, default=str)}")
                assert set(parked) == expected
                for kind, headers in parked.items():
                    assert headers["reason"], kind
                    assert headers["source"] == spec.name, kind
                    assert headers["attempt"] in (1, 2), (kind, headers)  # parked at once
                for name in (spec.name, *spec.retry_queues):
                    queue = await channel.declare_queue(name, passive=True)
                    assert queue.declaration_result.message_count == 0, name

            # The consumers are still alive and still apply and send real orders.
            response = await client.post(
                system.order_url + "/orders",
                json={
                    "customer_id": "c-1",
                    "product_id": "p-1",
                    "quantity": 1,
                    "total_amount": "3.50",
                },
            )
            assert response.status_code == 201
            order_id = response.json()["id"]

            async def applied_and_sent() -> bool:
                a = await client.post(
                    system.analytics_url + "/analytics/audit", json={"order_ids": [order_id]}
                )
                n = await client.post(
                    system.notifications_url + "/notifications/audit",
                    json={"order_ids": [order_id]},
                )
                return bool(a.json().get("orders")) and bool(n.json().get("orders"))

            await wait_until(applied_and_sent, timeout=30, interval=0.2, message="a real order")
            for url in (system.analytics_consumer_url, system.notifications_url):
                assert (await client.get(url + "/health/ready")).status_code == 200
    assert HUGE_BODY_BYTES >= 1024 * 1024
