"""The notification queue receives only the events it notifies on, also on a broker where it
was declared with the former catch-all binding."""

from __future__ import annotations

import dataclasses

import aio_pika

from common.messaging.topology import TopologySettings, apply_topology


async def _routed(channel: aio_pika.abc.AbstractChannel, exchange: str, key: str) -> bool:
    """Whether a mandatory publish with ``key`` reaches a queue (the broker returns it if not)."""
    target = await channel.get_exchange(exchange)
    try:
        await target.publish(aio_pika.Message(b"{}"), routing_key=key, mandatory=True)
    except aio_pika.exceptions.DeliveryError:
        return False
    return True


async def test_a_queue_bound_with_the_former_catch_all_loses_it_at_the_next_start(
    cleanup_topology: TopologySettings, amqp: aio_pika.abc.AbstractRobustConnection
):
    channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
    notifications = cleanup_topology.topology().only(cleanup_topology.notifications_queue)
    old = dataclasses.replace(
        notifications, queues=(dataclasses.replace(notifications.queues[0], bindings=("order.#",)),)
    )
    await apply_topology(channel, old)
    assert await _routed(channel, old.exchange, "order.paid"), "the old binding was not there"

    await apply_topology(channel, notifications)
    assert not await _routed(channel, notifications.exchange, "order.paid")
    assert await _routed(channel, notifications.exchange, "order.confirmed")
    # Applying again (every start does) is harmless when the old binding is already gone.
    await apply_topology(channel, notifications)
    assert await _routed(channel, notifications.exchange, "order.created")
