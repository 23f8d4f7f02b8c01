"""Issue 13 item 3 for the notification worker: a consumer that cannot start is logged,
restarted with backoff and named by readiness until it consumes (DESIGN.md §4 rule 9)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import httpx
import pytest
from structlog.testing import capture_logs

from common.testing import wait_until
from notification_worker.bootstrap import Worker
from tests.integration.notifications.conftest import free_port

pytestmark = pytest.mark.integration


async def test_a_notification_consumer_that_cannot_start_is_named_by_readiness_until_it_consumes(
    worker_settings, amqp, cleanup_topology
):
    queue = cleanup_topology.notifications_queue
    task = f"consumer:{queue}"
    channel = await amqp.channel()
    await channel.declare_queue(queue, durable=True)  # classic: the quorum declare fails
    await channel.close()
    port = free_port()
    worker = Worker(dataclasses.replace(worker_settings, http_port=port), serve_http=True)
    with capture_logs() as logs:
        starting = asyncio.create_task(worker.start())
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

                async def named_down() -> bool:
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await client.get("/health/ready")
                        return (
                            answer.status_code == 503
                            and answer.json()["checks"].get(task) == "down"
                        )
                    return False

                await wait_until(named_down, timeout=15, message="readiness naming the consumer")
                assert not starting.done()
                channel = await amqp.channel()
                await channel.queue_delete(queue)
                await channel.close()
                await asyncio.wait_for(starting, 30)  # the restarted consumer consumes

                async def ready() -> bool:
                    return (await client.get("/health/ready")).status_code == 200

                await wait_until(ready, timeout=10, message="readiness after the restart")
        finally:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            await worker.stop()
    assert any(e["event"] == "task_stopped_unexpectedly" and e["task"] == task for e in logs), (
        "the failure was not logged"
    )
