"""Fixtures shared by every layer of the suite.

Integration tests talk to the real MariaDB, Redis and RabbitMQ on localhost (started by
deploy/local-infra.sh). Each test gets its own exchange and queue names so tests never see each
other's messages and leave nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import aio_pika
import pytest

from common.messaging.topology import TopologySettings
from common.testing import unique_name

# The suite runs against the local infrastructure: local credential defaults apply
# (common/settings.py Env.credential). Tests of the deployed behaviour pass their own mapping.
os.environ.setdefault("ORDERFLOW_ENV", "local")

RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
def test_topology() -> TopologySettings:
    """A private copy of the topology, with short retry delays for fast tests."""
    base = unique_name("t")
    return TopologySettings(
        exchange=f"{base}.orders",
        analytics_queue=f"{base}.analytics.orders",
        notifications_queue=f"{base}.notifications.orders",
        analytics_delays=(0.2, 0.5),
        notification_delays=(0.2, 0.5),
    )


@pytest.fixture
async def amqp() -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(RABBITMQ_URL)
    yield connection
    await connection.close()


@pytest.fixture
async def cleanup_topology(
    test_topology: TopologySettings, amqp: aio_pika.abc.AbstractRobustConnection
) -> AsyncIterator[TopologySettings]:
    """Deletes the test's exchange and every queue it declared once the test ends."""
    yield test_topology
    channel = await amqp.channel()
    topology = test_topology.topology()
    for spec in topology.queues:
        for name in (spec.name, spec.dlq, *spec.retry_queues):
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
    with contextlib.suppress(Exception):
        await channel.exchange_delete(topology.exchange)
    with contextlib.suppress(Exception):
        await channel.close()
