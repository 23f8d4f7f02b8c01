"""Issue 13 item 3 for the analytics consumer: a runner that cannot start is logged, restarted
with backoff and named by readiness until it consumes (DESIGN.md §4 rule 9)."""

from __future__ import annotations

import contextlib

import aio_pika
import pytest
from structlog.testing import capture_logs

from analytics_service.consumer import create_consumer_app
from common.testing import wait_until
from common.testing_http import serve_app

pytestmark = pytest.mark.integration


async def _consumers(amqp, name: str) -> int:
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        return queue.declaration_result.consumer_count
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return 0
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def test_an_analytics_consumer_that_cannot_start_is_named_by_readiness_until_it_consumes(
    settings, amqp
):
    queue = settings.topology.analytics_queue
    task = f"consumer:{queue}"
    channel = await amqp.channel()
    await channel.declare_queue(queue, durable=True)  # classic: the quorum declare fails
    await channel.close()
    app = create_consumer_app(settings, configure_logs=False)
    with capture_logs() as logs:
        async with serve_app(app) as client:

            async def failed_and_named_down() -> bool:
                # The fault first: a consumer not started yet is "down" too.
                if not any(
                    e["event"] == "task_stopped_unexpectedly" and e["task"] == task for e in logs
                ):
                    return False
                answer = await client.get("/health/ready")
                return answer.status_code == 503 and answer.json()["checks"].get(task) == "down"

            await wait_until(
                failed_and_named_down, timeout=15, message="the failure, and readiness naming it"
            )
            channel = await amqp.channel()
            await channel.queue_delete(queue)
            await channel.close()

            async def consuming() -> bool:
                return await _consumers(amqp, queue) >= 1

            await wait_until(consuming, timeout=30, message="the restarted consumer")

            async def ready() -> bool:
                return (await client.get("/health/ready")).status_code == 200

            await wait_until(ready, timeout=10, message="readiness after the restart")
