"""The worker as a real process: its HTTP server, the audit contract, and SIGTERM mid-send."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import uuid

import httpx
import pytest

from common.testing import wait_until
from common.testing_http import serve_app
from notification_worker.bootstrap import create_worker_app
from tests.integration.notifications.conftest import (
    REDIS_URL,
    WEBHOOK_SECRET,
    free_port,
    order_created,
    publish,
    queue_depths,
)

pytestmark = pytest.mark.integration


def worker_env(topology, redis_prefix: str, port: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "RABBITMQ_URL": os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        "REDIS_URL": REDIS_URL,
        "ORDERS_EXCHANGE": topology.exchange,
        "NOTIFICATIONS_QUEUE": topology.notifications_queue,
        "ANALYTICS_QUEUE": topology.analytics_queue,
        "NOTIFICATION_RETRY_DELAYS": ",".join(str(d) for d in topology.notification_delays),
        "ANALYTICS_RETRY_DELAYS": ",".join(str(d) for d in topology.analytics_delays),
        "NOTIFY_REDIS_PREFIX": redis_prefix,
        "NOTIFY_HTTP_PORT": str(port),
        **extra,
    }


async def ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_sigterm_during_a_send_finishes_that_send_acks_it_and_exits_0(
    receiver, amqp, cleanup_topology, redis_prefix
):
    receiver.delay = 2.0
    port = free_port()
    env = worker_env(
        cleanup_topology,
        redis_prefix,
        port,
        NOTIFY_CHANNELS="webhook",
        NOTIFY_WEBHOOK_URL=receiver.url,
        NOTIFY_WEBHOOK_SECRET=WEBHOOK_SECRET,
        NOTIFY_WEBHOOK_TIMEOUT_SECONDS="5",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notification_worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
            await wait_until(lambda: ready(client), timeout=20, message="the worker ready")
            order_id, body = order_created()
            await publish(amqp, cleanup_topology, body)
            await wait_until(
                lambda: asyncio.sleep(0, receiver.received), timeout=5, message="the send to start"
            )
            assert not receiver.answered
            process.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, out.decode()[-3000:]
    assert len(receiver.answered) == 1 and receiver.answered[0].status == 200
    # The worker is gone, so anything it had not acked would be back in a queue by now.
    assert set((await queue_depths(amqp, cleanup_topology)).values()) == {0}
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        assert await redis.hgetall(f"{redis_prefix}:audit:{order_id}") == {b"webhook": b"1"}
    finally:
        await redis.aclose()
    assert b"notification_worker_stopped" in out


async def test_the_http_server_answers_health_metrics_and_the_audit_contract(
    worker_settings, amqp, cleanup_topology
):
    app = create_worker_app(
        dataclasses.replace(worker_settings, channels=("log",)), configure_logs=False
    )
    async with serve_app(app) as client:
        await wait_until(lambda: ready(client), timeout=10, message="ready")
        health = (await client.get("/health/ready")).json()
        assert health == {
            "status": "ok",
            "checks": {
                "broker": "up",
                "redis": "up",
                "channels": "up",
                f"consumer:{cleanup_topology.notifications_queue}": "up",
                "scheduled-gauge": "up",
            },
        }
        assert (await client.get("/health/live")).status_code == 200

        order_id, body = order_created()
        await publish(amqp, cleanup_topology, body)
        unknown = str(uuid.uuid4())

        async def audited() -> dict:
            response = await client.post(
                "/notifications/audit", json={"order_ids": [order_id, unknown]}
            )
            assert response.status_code == 200, response.text
            return response.json() if response.json()["orders"] else {}

        report = await wait_until(audited, timeout=5, message="the audit to show the send")
        assert report == {
            "orders": [{"order_id": order_id, "sends": {"log": 1}}],
            "missing": [unknown],
        }

        metrics = (await client.get("/metrics")).text
        assert 'notification_worker_sent_total{channel="log"}' in metrics
        assert "notification_worker_send_seconds_bucket" in metrics
        assert "notification_worker_scheduled_pending" in metrics

        bad = await client.post("/notifications/audit", json={"order_ids": ["nope"]})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        too_many = [str(uuid.uuid4()) for _ in range(10_001)]
        big = await client.post("/notifications/audit", json={"order_ids": too_many})
        assert big.status_code == 422
        malformed = await client.post(
            "/notifications/audit",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert malformed.status_code == 400
