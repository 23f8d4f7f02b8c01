"""The parking-lot CLI: list, show, replay and purge against a real parking lot."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from redis.asyncio import Redis

from common.testing import wait_until
from notification_worker import dlq
from tests.integration.notifications.conftest import (
    REDIS_URL,
    audit_of,
    keys_matching,
    metric,
    order_created,
    publish,
    queue_depths,
    webhook_settings,
)

pytestmark = pytest.mark.integration


async def run_cli(topology, *args: str) -> tuple[int, str]:
    env = {
        **os.environ,
        "ORDERS_EXCHANGE": topology.exchange,
        "NOTIFICATIONS_QUEUE": topology.notifications_queue,
        "ANALYTICS_QUEUE": topology.analytics_queue,
        "NOTIFICATION_RETRY_DELAYS": ",".join(str(d) for d in topology.notification_delays),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "notification_worker",
        "dlq",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode()


async def test_dlq_replay_delivers_a_parked_message(start_worker, receiver, amqp, cleanup_topology):
    receiver.statuses = [400]  # rejected once, accepted after the operator's fix
    worker = await start_worker(channels=("webhook",), webhook=webhook_settings(receiver))
    spec = cleanup_topology.topology().queue(cleanup_topology.notifications_queue)
    order_id, body = order_created()
    event_id = await publish(amqp, cleanup_topology, body)

    async def parked() -> bool:
        return (await queue_depths(amqp, cleanup_topology))[spec.dlq] == 1

    await wait_until(parked, timeout=5, message="the message in the parking lot")

    code, out = await run_cli(cleanup_topology, "list")
    assert code == 0, out
    assert event_id in out and "reason=permanent_failure" in out
    assert "1 parked message(s)" in out
    code, out = await run_cli(cleanup_topology, "show", event_id)
    assert code == 0, out
    assert '"x-park-reason": "permanent_failure"' in out and order_id in out
    assert (await queue_depths(amqp, cleanup_topology))[spec.dlq] == 1  # browsing kept it

    code, out = await run_cli(cleanup_topology, "replay", event_id)
    assert code == 0, out
    assert f"replayed {event_id} (OrderCreated, was permanent_failure)" in out
    await wait_until(lambda: audit_of(worker, order_id), timeout=5, message="the replayed send")
    assert len(receiver.successes()) == 1
    assert (await queue_depths(amqp, cleanup_topology))[spec.dlq] == 0


async def test_dlq_replay_all_resets_attempts_and_purge_empties_the_lot(
    start_worker, receiver, amqp, cleanup_topology
):
    receiver.default_status = 400
    await start_worker(channels=("webhook",), webhook=webhook_settings(receiver))
    spec = cleanup_topology.topology().queue(cleanup_topology.notifications_queue)
    for _ in range(2):
        await publish(amqp, cleanup_topology, order_created()[1])

    async def parked(count: int) -> bool:
        return (await queue_depths(amqp, cleanup_topology))[spec.dlq] == count

    await wait_until(lambda: parked(2), timeout=5, message="two parked messages")
    connection = amqp
    moved = await dlq.replay(connection, spec)
    assert len(moved) == 2
    # Parked again by the still-rejecting receiver, with a fresh attempt count.
    await wait_until(
        lambda: asyncio.sleep(0, len(receiver.received) == 4),
        timeout=5,
        message="both replayed messages tried again",
    )
    await wait_until(lambda: parked(2), timeout=5, message="both parked again")
    again = await dlq.list_parked(connection, spec)
    assert [p.attempts for p in again] == [1, 1]
    assert all("x-replayed-at" in p.headers for p in again)

    code, out = await run_cli(cleanup_topology, "purge")
    assert code == 0, out
    assert "purged 2 message(s)" in out
    assert (await queue_depths(amqp, cleanup_topology))[spec.dlq] == 0


async def test_a_parked_message_keeps_what_it_sent_so_its_replay_does_not_depend_on_redis(
    start_worker, receiver, amqp, cleanup_topology, redis_prefix
):
    receiver.statuses = [400]  # the webhook rejects once; the log channel sends at once
    worker = await start_worker(channels=("log", "webhook"), webhook=webhook_settings(receiver))
    spec = cleanup_topology.topology().queue(cleanup_topology.notifications_queue)
    order_id, body = order_created()
    await publish(amqp, cleanup_topology, body)

    async def parked() -> bool:
        return (await queue_depths(amqp, cleanup_topology))[spec.dlq] == 1

    await wait_until(parked, timeout=5, message="the message in the parking lot")
    [message] = await dlq.list_parked(amqp, spec)
    assert message.headers["x-notify-done"] == "created/log"

    # Redis loses the send records (a restart without persistence) before the operator replays.
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.delete(*await keys_matching(redis, f"{redis_prefix}:sent:*"))
    finally:
        await redis.aclose()
    assert len(await dlq.replay(amqp, spec)) == 1
    await wait_until(
        lambda: asyncio.sleep(0, receiver.successes()), timeout=5, message="the replayed webhook"
    )

    async def webhook_recorded() -> int:
        return (await audit_of(worker, order_id)).get("webhook", 0)

    await wait_until(webhook_recorded, timeout=5, message="the replayed webhook recorded")
    assert metric(worker, "sent_total", {"channel": "log"}) == 1
    assert metric(worker, "sent_total", {"channel": "webhook"}) == 1
    assert await audit_of(worker, order_id) == {"log": 1, "webhook": 1}
