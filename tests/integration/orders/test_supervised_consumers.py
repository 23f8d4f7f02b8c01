"""Issue 13 item 3: a consumer that fails at start is logged, restarted with backoff, named by
readiness and counted in the task gauge, and consumes once the cause is gone (rule 9)."""

from __future__ import annotations

import contextlib

import aio_pika
import pytest
from structlog.testing import capture_logs

from common.testing import wait_until
from tests.integration.orders.conftest import metric_value

pytestmark = pytest.mark.integration


async def _consumers(amqp, name: str) -> int:
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        return queue.declaration_result.consumer_count
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return 0  # not declared again yet
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def test_a_fulfilment_consumer_that_cannot_start_is_reported_and_restarted_until_it_can(
    order_client, cleanup_topology, amqp
):
    fulfilment = cleanup_topology.fulfilment_queue
    task = f"consumer:{fulfilment}"
    # A classic queue under the quorum queue's name: declaring the topology fails
    # (PRECONDITION_FAILED), as an argument mismatch or a refused permission does.
    channel = await amqp.channel()
    await channel.declare_queue(fulfilment, durable=True)
    await channel.close()
    with capture_logs() as logs:
        async with order_client() as (client, container):

            async def reported_down() -> bool:
                # Down in readiness from the start (not consuming), in the gauge once it failed;
                # reported, not gating: the service still takes orders (DESIGN.md §4 rule 1).
                answer = await client.get("/health/ready")
                failed = metric_value(container, "order_service_task_up", {"task": task}) == 0
                return (
                    answer.status_code == 200 and answer.json()["checks"][task] == "down" and failed
                )

            await wait_until(reported_down, timeout=15, message="readiness naming the consumer")
            assert metric_value(container, "order_service_task_up", {"task": task}) == 0
            await wait_until(
                lambda: _true(
                    metric_value(container, "order_service_task_restarts_total", {"task": task})
                    >= 2
                ),
                timeout=15,
                message="a second restart",
            )
            assert await _consumers(amqp, fulfilment) == 0

            channel = await amqp.channel()
            await channel.queue_delete(fulfilment)
            await channel.close()

            async def consuming() -> bool:
                return await _consumers(amqp, fulfilment) >= 1

            await wait_until(consuming, timeout=30, message="the restarted consumer")
            await wait_until(
                lambda: _ready(client, task), timeout=10, message="readiness after the restart"
            )
            assert metric_value(container, "order_service_task_up", {"task": task}) == 1
    failures = [e for e in logs if e["event"] == "task_stopped_unexpectedly"]
    assert failures and failures[0]["task"] == task
    assert "PRECONDITION_FAILED" in failures[0]["error"]


async def _true(value: bool) -> bool:
    return value


async def _ready(client, task: str) -> bool:
    answer = await client.get("/health/ready")
    return answer.status_code == 200 and answer.json()["checks"][task] == "up"
