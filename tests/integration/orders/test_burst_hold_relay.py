"""The relay's hold against the real MySQL and RabbitMQ: while the API is saturated, committed
events stay in the outbox and none reaches the broker; when the pressure falls, at the bound,
or on stop, every one of them arrives once, including rows that fell out of the relay's memory.

Saturation is simulated on the service's own gauge (POSTs held "in flight" by the test), with
the thresholds lowered so that a handful of them press; the orders are real POSTs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque

import pytest

from common.testing import unique_name, wait_until
from order_service.container import Container
from tests.integration.orders.conftest import metric_value
from tests.integration.orders.test_outbox_relay import Collector, order_body

pytestmark = pytest.mark.integration

HOLDING = "order_service_outbox_relay_holding"
HOLDS = "order_service_outbox_relay_holds_total"
PRESSING = 6  # simulated POSTs in flight: above the lowered threshold of 3


def hold_settings(**overrides: object) -> dict[str, object]:
    return {
        "fulfilment_enabled": False,
        "relay_hold_concurrency": 3.0,
        "relay_hold_min_rate": 0.0,
        "relay_hold_max_seconds": 30.0,
        # The idle relay looks at the pressure at least this often: the hold starts sooner.
        "relay_poll_interval": 0.1,
        **overrides,
    }


async def press(container: Container) -> None:
    for _ in range(PRESSING):
        container.intake.enter()
    await wait_until(
        lambda: _holding(container), timeout=15, message="the relay holds under pressure"
    )


def release(container: Container) -> None:
    for _ in range(PRESSING):
        container.intake.leave()


async def _holding(container: Container) -> bool:
    return metric_value(container, HOLDING) == 1


async def post_orders(client, count: int) -> list[str]:
    customer = unique_name("burst")
    ids = []
    for _ in range(count):
        response = await client.post("/orders", json=order_body(customer))
        assert response.status_code == 201
        ids.append(response.json()["id"])
    return ids


async def arrived(collector: Collector, ids: list[str]) -> Counter[str]:
    counts = await collector.order_ids()
    return Counter({i: counts[i] for i in ids if counts[i]})


async def test_events_committed_while_the_api_is_saturated_reach_the_broker_after_it_once_each(
    order_client, amqp, test_topology
):
    async with order_client(**hold_settings()) as (client, container):
        assert await container.relay.wait_ready(10)
        channel = await amqp.channel()
        collector = Collector(channel, test_topology.analytics_queue)
        await press(container)
        ids = await post_orders(client, 20)
        # Held: committed and answered 201, yet none at the broker a second later.
        await asyncio.sleep(1.0)  # a duration under test, not a wait for a condition
        assert await arrived(collector, ids) == Counter()
        assert metric_value(container, HOLDING) == 1
        release(container)
        await wait_until(
            lambda: _all_arrived(collector, ids), timeout=10, message="held events published"
        )
        assert await arrived(collector, ids) == Counter(dict.fromkeys(ids, 1))
        assert metric_value(container, HOLDS, {"reason": "pressure_fell"}) == 1
        await channel.close()


async def test_a_hold_under_endless_pressure_publishes_at_its_bound(
    order_client, amqp, test_topology
):
    bound = 3.0
    async with order_client(**hold_settings(relay_hold_max_seconds=bound)) as (client, container):
        assert await container.relay.wait_ready(10)
        channel = await amqp.channel()
        collector = Collector(channel, test_topology.analytics_queue)
        await press(container)
        held_from = time.monotonic()
        ids = await post_orders(client, 10)
        await wait_until(
            lambda: _all_arrived(collector, ids), timeout=15, message="events out at the bound"
        )
        waited = time.monotonic() - held_from
        # Still pressing throughout: they went out because of the bound, not the pressure.
        assert container.intake.sample().in_flight >= PRESSING
        assert metric_value(container, HOLDS, {"reason": "max_hold"}) >= 1
        assert metric_value(container, HOLDS, {"reason": "pressure_fell"}) == 0
        assert waited <= bound + 2.0
        assert await arrived(collector, ids) == Counter(dict.fromkeys(ids, 1))
        release(container)
        await channel.close()


async def test_stopping_during_a_hold_publishes_every_held_event(order_client, amqp, test_topology):
    channel = await amqp.channel()
    collector = Collector(channel, test_topology.analytics_queue)
    async with order_client(**hold_settings()) as (client, container):
        assert await container.relay.wait_ready(10)
        await press(container)
        ids = await post_orders(client, 15)
        assert await arrived(collector, ids) == Counter()
    # The service stopped (the relay flushed) while the pressure was still on.
    assert metric_value(container, HOLDS, {"reason": "stopping"}) == 1
    await wait_until(
        lambda: _all_arrived(collector, ids), timeout=10, message="events flushed on stop"
    )
    assert await arrived(collector, ids) == Counter(dict.fromkeys(ids, 1))
    await channel.close()


async def test_rows_that_fell_out_of_memory_during_a_hold_are_published_from_the_outbox(
    order_client, amqp, test_topology
):
    async with order_client(**hold_settings()) as (client, container):
        assert await container.relay.wait_ready(10)
        # The relay keeps at most 5 handed-over rows in memory (20,000 in service): the others
        # wait in the outbox, where only the recovery pass after the hold finds them.
        handoff = container.relay._handoff
        handoff.rows = deque(handoff.rows, maxlen=5)
        channel = await amqp.channel()
        collector = Collector(channel, test_topology.analytics_queue)
        await press(container)
        ids = await post_orders(client, 25)
        assert handoff.overflowed
        assert await arrived(collector, ids) == Counter()
        release(container)
        await wait_until(
            lambda: _all_arrived(collector, ids), timeout=30, message="dropped rows recovered"
        )
        assert await arrived(collector, ids) == Counter(dict.fromkeys(ids, 1))
        await channel.close()


async def _all_arrived(collector: Collector, ids: list[str]) -> bool:
    counts = await collector.order_ids()
    return all(counts[i] for i in ids)
