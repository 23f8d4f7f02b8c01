"""Every parking lot has list / show / replay / purge: the generic CLI on the order service's
fulfilment queue (issue 13 item 2, DESIGN.md §4 rule 8)."""

from __future__ import annotations

import asyncio
import json
import sys

import aio_pika
import pytest

from common.messaging.consumer import ConsumerMetrics, ConsumerRunner
from common.messaging.outcomes import Ack, Park
from common.messaging.topology import apply_topology
from common.observability import Metrics
from common.testing import wait_until
from tests.conftest import RABBITMQ_URL
from tests.integration.messaging.test_consumer_runner import (
    ScriptedHandler,
    event_body,
    queue_depth,
)

pytestmark = pytest.mark.integration


async def dlq(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "common.messaging.dlq",
        "--url",
        RABBITMQ_URL,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_a_parked_fulfilment_event_is_listed_shown_replayed_and_the_rest_purged(
    amqp, cleanup_topology
):
    topology = cleanup_topology.topology()
    spec = topology.queue(cleanup_topology.fulfilment_queue)
    channel = await amqp.channel()
    await apply_topology(channel, topology.only(spec.name))
    handler = ScriptedHandler([Park("payment_rejected", "card blocked"), Park("x"), Ack()])
    runner = ConsumerRunner(amqp, spec, handler, ConsumerMetrics(Metrics("t")))
    await runner.start()
    try:
        exchange = await channel.get_exchange(topology.exchange)
        ids = []
        for _ in range(2):
            event_id, body = event_body()
            ids.append(event_id)
            await exchange.publish(
                aio_pika.Message(
                    body, message_id=event_id, type="OrderCreated", content_type="application/json"
                ),
                routing_key="order.created",
            )

        async def parked() -> bool:
            return await queue_depth(amqp, spec.dlq) == 2

        await wait_until(parked, timeout=10, message="two parked events")

        code, out = await dlq("list", spec.name)
        assert code == 0, out
        assert f"2 parked message(s) in {spec.dlq}" in out
        assert "reason=payment_rejected" in out and "error=card blocked" in out

        code, out = await dlq("show", spec.dlq, ids[0])
        assert code == 0, out
        shown = json.loads(out)
        assert shown["message_id"] == ids[0]
        assert shown["headers"]["x-source-queue"] == spec.name

        code, out = await dlq("replay", spec.name, ids[0])
        assert code == 0, out
        assert f"1 message(s) moved from {spec.dlq} to {spec.name}" in out
        await wait_until(lambda: _true(len(handler.calls) == 3), timeout=10, message="replayed")
        assert handler.calls[-1][1] == 1  # attempts start over

        code, out = await dlq("purge", spec.name)
        assert code == 0, out
        assert f"purged 1 message(s) from {spec.dlq}" in out
        assert await queue_depth(amqp, spec.dlq) == 0
    finally:
        await runner.stop()
        await channel.close()


async def _true(value: bool) -> bool:
    return value
