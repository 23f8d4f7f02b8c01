"""The confirming publisher sends a batch at once, even when the event loop is busy, and still
reports each message's own fate (confirmed, unroutable)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aio_pika.abc import AbstractRobustConnection

from common.messaging.publisher import (
    ConfirmingPublisher,
    OutgoingMessage,
    open_confirming_publisher,
)
from common.messaging.topology import TopologySettings
from tests.conftest import RABBITMQ_URL

BATCH = 500
# What every turn of the event loop costs besides the publishes: the order service's loop
# serves requests, the saga and the relay at once.
OTHER_WORK_PER_TURN = 0.002


async def _open(
    settings: TopologySettings,
) -> tuple[AbstractRobustConnection, ConfirmingPublisher]:
    return await open_confirming_publisher(
        RABBITMQ_URL, client_name="test-publisher", topology=settings.topology()
    )


def _hold_the_loop(seconds: float) -> None:
    """CPU work: nothing else on the loop runs meanwhile, as while a request is parsed."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def _message(n: int, routing_key: str) -> OutgoingMessage:
    return OutgoingMessage(
        body=b'{"n": %d}' % n,
        routing_key=routing_key,
        message_id=f"m-{n}",
        event_type="OrderCreated",
        timestamp=datetime.now(UTC),
    )


async def test_a_batch_is_published_in_a_few_loop_turns_while_the_loop_is_busy(
    cleanup_topology: TopologySettings,
) -> None:
    connection, publisher = await _open(cleanup_topology)
    turns = 0
    stop = asyncio.Event()

    async def other_work() -> None:
        nonlocal turns
        while not stop.is_set():
            turns += 1
            _hold_the_loop(OTHER_WORK_PER_TURN)
            await asyncio.sleep(0)

    try:
        messages = [_message(n, "order.created") for n in range(BATCH)]
        busy = asyncio.create_task(other_work())
        await asyncio.sleep(0)
        before = turns
        results = await publisher.publish_many(messages, timeout=30.0)
        spent = turns - before
        stop.set()
        await busy
    finally:
        await connection.close()

    assert [r.message_id for r in results if r.ok] == [m.message_id for m in messages]
    # One publish per loop turn (aio-pika's Exchange.publish, or a 10-frame writer queue)
    # needs at least BATCH turns; sent at once, the batch waits a few turns for its confirms.
    assert spent < BATCH // 2, f"{BATCH} publishes took {spent} loop turns"


async def test_an_unroutable_message_in_a_batch_is_reported_returned_and_the_rest_confirmed(
    cleanup_topology: TopologySettings,
) -> None:
    connection, publisher = await _open(cleanup_topology)
    try:
        messages = [
            _message(0, "order.created"),
            _message(1, "nobody.listens.here"),
            _message(2, "order.created"),
        ]
        results = await publisher.publish_many(messages, timeout=10.0)
    finally:
        await connection.close()

    assert [(r.ok, r.returned) for r in results] == [(True, False), (False, True), (True, False)]


async def test_a_closed_channel_fails_every_message_of_the_batch_without_raising(
    cleanup_topology: TopologySettings,
) -> None:
    connection, publisher = await _open(cleanup_topology)
    await connection.close()

    results = await publisher.publish_many(
        [_message(0, "order.created"), _message(1, "order.created")], timeout=5.0
    )

    assert [r.ok for r in results] == [False, False]
    assert all(r.error for r in results)
