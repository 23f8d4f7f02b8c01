"""The bench refuses to start while another system consumes the queues it would use."""

from __future__ import annotations

import aio_pika
import pytest

from common.testing import unique_name
from loadtool.queue_guard import QueuesInUseError, consumers, refuse_if_consumed
from tests.conftest import RABBITMQ_URL

pytestmark = pytest.mark.integration


async def test_a_consumed_queue_is_named_and_the_bench_refuses(amqp) -> None:
    busy, idle, missing = (unique_name(n) for n in ("busy", "idle", "missing"))
    channel = await amqp.channel()
    declared = [await channel.declare_queue(q, auto_delete=True) for q in (busy, idle)]

    async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        await message.ack()

    tag = await declared[0].consume(take)
    try:
        queues = {RABBITMQ_URL: [busy, idle, missing]}
        assert await consumers(queues) == {busy: 1, idle: 0, missing: 0}
        with pytest.raises(QueuesInUseError, match=rf"{busy} \(1 consumer\)") as refused:
            await refuse_if_consumed(queues)
        assert idle not in str(refused.value)
    finally:
        await declared[0].cancel(tag)
    await refuse_if_consumed({RABBITMQ_URL: [busy, idle, missing]})
    for queue in declared:
        await queue.delete(if_unused=False, if_empty=False)


async def test_an_unreachable_broker_is_an_error_not_a_pass() -> None:
    with pytest.raises(aio_pika.exceptions.AMQPConnectionError):
        await consumers({"amqp://guest:guest@127.0.0.1:1/": ["q"]})
