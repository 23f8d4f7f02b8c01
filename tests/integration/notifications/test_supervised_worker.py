"""Issue 13 item 3 for the notification worker: a consumer that cannot start is logged,
restarted with backoff and named by readiness until it consumes (DESIGN.md §4 rule 9)."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from common.testing import wait_until
from common.testing_http import serve_app
from notification_worker.bootstrap import create_worker_app

pytestmark = pytest.mark.integration


async def test_a_notification_consumer_that_cannot_start_is_named_by_readiness_until_it_consumes(
    worker_settings, amqp, cleanup_topology
):
    queue = cleanup_topology.notifications_queue
    task = f"consumer:{queue}"
    channel = await amqp.channel()
    await channel.declare_queue(queue, durable=True)  # classic: the quorum declare fails
    await channel.close()
    app = create_worker_app(worker_settings, configure_logs=False)
    worker = app.state.worker
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
            # The restarted consumer consumes.
            await asyncio.wait_for(worker.wait_consuming(), 30)

            async def ready() -> bool:
                return (await client.get("/health/ready")).status_code == 200

            await wait_until(ready, timeout=10, message="readiness after the restart")
