"""The analytics consumer as a real process on the common host: SIGTERM while a delivery is in
flight finishes it, commits its effect, acks it and exits 0 (DESIGN.md §4 rule 4)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import sys
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import insert

from analytics_service.adapters.tables import inbox
from common.declared_settings import declared
from common.messaging.topology import TopologySettings
from common.testing import unique_name, wait_until
from tests.integration.analytics.conftest import (
    DATABASE_URL,
    RABBITMQ_URL,
    REDIS_URL,
    order_event,
)

pytestmark = pytest.mark.integration


def topology_env(topology: TopologySettings) -> dict[str, str]:
    """The topology as the environment a process reads it from (its declared settings)."""
    env = {}
    fields = dataclasses.fields(TopologySettings)
    for field, (spec, _, _) in zip(fields, declared(TopologySettings), strict=True):
        value = getattr(topology, field.name)
        if isinstance(value, tuple):
            env[spec.env] = ",".join(f"{v:g}" for v in value)
        elif value is not None:
            env[spec.env] = str(value)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def answers(client: httpx.AsyncClient, path: str) -> bool:
    try:
        return (await client.get(path)).status_code == 200
    except httpx.HTTPError:
        return False


async def _read_until(process: asyncio.subprocess.Process, marker: bytes) -> bytes:
    assert process.stdout is not None
    out = b""
    while marker not in out:
        line = await process.stdout.readline()
        if not line:
            raise AssertionError(f"the process ended before {marker!r}: {out.decode()[-2000:]}")
        out += line
    return out


async def ready_count(amqp, queue: str) -> int:
    channel = await amqp.channel()
    try:
        declared_queue = await channel.declare_queue(queue, passive=True)
        return declared_queue.declaration_result.message_count or 0
    finally:
        await channel.close()


async def test_sigterm_while_a_delivery_waits_on_the_database_finishes_it_acks_it_and_exits_0(
    cleanup_topology, publisher, db, amqp
):
    consumer = unique_name("sigterm")
    port = free_port()
    env = {
        **os.environ,
        "ANALYTICS_DATABASE_URL": DATABASE_URL,
        "RABBITMQ_URL": RABBITMQ_URL,
        "REDIS_URL": REDIS_URL,
        "ANALYTICS_CONSUMER_HTTP_PORT": str(port),
        "ANALYTICS_CONSUMER_NAME": consumer,
        **topology_env(cleanup_topology),
        "PYTHONUNBUFFERED": "1",
    }
    event = order_event()
    queue = cleanup_topology.analytics_queue
    async with db.engine.connect() as holder:
        # This event's inbox row, inserted and not committed: the consumer's insert of the same
        # key waits for this transaction, so its delivery is in flight when SIGTERM comes.
        held = await holder.begin()
        await holder.execute(
            insert(inbox).values(
                consumer=consumer,
                event_id=str(event.event_id),
                batch_token="held-by-the-test",
                received_at=datetime.now(UTC).replace(tzinfo=None),
            )
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "analytics_service",
            "consumer",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
                await wait_until(
                    lambda: answers(client, "/health/ready"), timeout=30, message="ready"
                )
                await publisher.publish([event])

                async def delivered() -> bool:
                    return await ready_count(amqp, queue) == 0

                await wait_until(delivered, timeout=10, message="the delivery to the consumer")
                assert await db.fact_count([event.data.order_id]) == 0
                process.send_signal(signal.SIGTERM)
                # Released only once the host's stop has begun, so the drain meets the delivery
                # still waiting on the database.
                head = await asyncio.wait_for(_read_until(process, b"host_stopping"), 10)
            assert process.returncode is None, "it exited without waiting for the delivery"
            await held.rollback()
            rest, _ = await asyncio.wait_for(process.communicate(), 30)
            out = head + rest
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, out.decode()[-3000:]
    assert await db.fact_count([event.data.order_id]) == 1
    # The process is gone: a delivery it had not acked would be back in its queue by now.
    spec = cleanup_topology.topology().queue(queue)
    for name in (queue, *spec.retry_queues, spec.dlq):
        assert await ready_count(amqp, name) == 0, name
    assert b"analytics_consumer_stopped" in out
