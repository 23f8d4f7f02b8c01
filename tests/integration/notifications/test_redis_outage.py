"""A Redis outage between a send and its record, against real RabbitMQ and Redis (through a
proxy the test cuts): the receiver counts what really arrived."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest
from redis.asyncio import Redis

from common.testing import TcpProxy, wait_until
from tests.integration.notifications.conftest import (
    REDIS_URL,
    keys_matching,
    metric,
    order_created,
    publish,
    queue_depths,
    webhook_settings,
)

pytestmark = pytest.mark.integration


def _through(proxy: TcpProxy) -> str:
    url = urllib.parse.urlsplit(REDIS_URL)
    return url._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


async def test_a_webhook_sent_while_redis_refuses_its_record_is_not_sent_again_when_redis_returns(
    start_worker, receiver, amqp, cleanup_topology, redis_prefix
):
    proxy = await TcpProxy("127.0.0.1", int(urllib.parse.urlsplit(REDIS_URL).port or 6379)).start()
    direct = Redis.from_url(REDIS_URL)
    try:
        # Redis goes away while the receiver holds the request: the send succeeds, its record fails.
        async def cut_once() -> None:
            if len(receiver.received) == 1:
                await proxy.cut()

        receiver.on_request = cut_once
        worker = await start_worker(
            channels=("webhook",),
            webhook=webhook_settings(receiver, timeout=0.5),
            redis_url=_through(proxy),
            max_attempts=20,  # room for the old behaviour: retries until the lease has expired
        )
        order_id, body = order_created()
        await publish(amqp, cleanup_topology, body)
        await wait_until(
            lambda: asyncio.sleep(0, receiver.answered),
            timeout=10,
            message="the webhook accepted",
        )

        async def leases_expired() -> bool:
            return not await keys_matching(direct, f"{redis_prefix}:sent:*")

        # Outage longer than the claim's lease (0.5 s timeout + 5 s margin).
        await wait_until(leases_expired, timeout=15, message="the send's lease to expire")
        await proxy.restore()

        async def settled() -> bool:
            audit = await direct.hgetall(f"{redis_prefix}:audit:{order_id}")
            return bool(audit) and not any((await queue_depths(amqp, cleanup_topology)).values())

        await wait_until(settled, timeout=15, message="the send recorded and the event settled")
        assert len(receiver.received) == 1
        assert await direct.hgetall(f"{redis_prefix}:audit:{order_id}") == {b"webhook": b"1"}
        assert metric(worker, "events_parked_total", {"reason": "attempts_exhausted"}) == 0
    finally:
        await proxy.close()
        await direct.aclose()
