"""The whole system with each process on its own least-privilege RabbitMQ user (vhost
``orderflow``, the permissions production gets, for this test's private topology): orders
flow end to end, and the order service's user still cannot read a consumer's queue."""

from __future__ import annotations

import aio_pika
import pytest
from aiormq.exceptions import ChannelAccessRefused

from loadtool.audit import AuditConfig
from loadtool.cli import run_and_audit
from loadtool.generator import GeneratorConfig
from loadtool.runner import LoadConfig
from tests.e2e.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_every_service_works_with_only_its_own_broker_permissions() -> None:
    async with RunningSystem(least_privilege=True) as system:
        assert system.broker_users is not None
        result, report = await run_and_audit(
            LoadConfig(url=system.order_url, count=100, concurrency=8),
            GeneratorConfig(),
            AuditConfig(
                analytics_url=system.analytics_url,
                notifications_url=system.notifications_url,
                timeout=60,
            ),
        )
        assert len(result.accepted) == 100, result.error_samples
        assert report is not None
        assert report.ok, (report.lost, report.notifications_missing)

        connection = await aio_pika.connect(system.broker_users.urls["order-service"])
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(system.topology.analytics_queue, ensure=False)
            with pytest.raises(ChannelAccessRefused):
                await queue.get(fail=False)
