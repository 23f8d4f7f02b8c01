"""Scheduled sends held in the TTL tiers (0.2/0.5/1 s here), never unacked in the worker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from common.testing import wait_until
from tests.integration.notifications.conftest import (
    audit_of,
    metric,
    order_created,
    publish,
    queue_depths,
    webhook_settings,
)

pytestmark = pytest.mark.integration


def in_seconds(seconds: float) -> tuple[str, float]:
    """An RFC 3339 due time ``seconds`` from now, and the same instant on the monotonic clock."""
    due = datetime.now(UTC) + timedelta(seconds=seconds)
    return due.isoformat(), time.monotonic() + seconds


async def test_a_scheduled_notification_is_sent_at_its_time(
    start_worker, receiver, amqp, cleanup_topology
):
    worker = await start_worker(channels=("webhook",), webhook=webhook_settings(receiver))
    due_text, due_at = in_seconds(3.3)
    order_id, body = order_created(scheduled_time=due_text)
    await publish(amqp, cleanup_topology, body)

    await wait_until(
        lambda: asyncio.sleep(0, metric(worker, "scheduled_pending") == 1),
        timeout=2,
        message="the scheduled gauge to show it",
    )
    # Held in the tiers, not in the worker: nothing is unacked on the work queue meanwhile.
    spec = cleanup_topology.topology().queue(cleanup_topology.notifications_queue)
    assert (await queue_depths(amqp, cleanup_topology))[spec.name] == 0
    assert worker.broker.runner is not None and worker.broker.runner.in_flight == 0

    await wait_until(
        lambda: asyncio.sleep(0, receiver.successes()), timeout=6, message="the scheduled send"
    )
    assert abs(receiver.successes()[0].at - due_at) <= 1.0
    # The worker records a send after the receiver answered: wait for the record, not the POST.
    await wait_until(
        lambda: audit_of(worker, order_id), timeout=5, message="the scheduled send's record"
    )
    assert await audit_of(worker, order_id) == {"webhook": 1}
    assert len(receiver.received) == 1
    await wait_until(
        lambda: asyncio.sleep(0, metric(worker, "scheduled_pending") == 0),
        timeout=2,
        message="the scheduled gauge to drop",
    )
    consumed = metric(
        worker, "events_consumed_total", {"event_type": "OrderCreated", "outcome": "deferred"}
    )
    assert consumed >= 3  # it hopped through the tiers


async def test_a_short_delay_message_is_not_held_behind_a_long_one(
    start_worker, receiver, amqp, cleanup_topology
):
    await start_worker(channels=("webhook",), webhook=webhook_settings(receiver))
    long_text, long_due = in_seconds(2.5)
    long_order, long_body = order_created(scheduled_time=long_text)
    await publish(amqp, cleanup_topology, long_body)
    short_text, short_due = in_seconds(0.4)
    short_order, short_body = order_created(scheduled_time=short_text)
    await publish(amqp, cleanup_topology, short_body)

    await wait_until(
        lambda: asyncio.sleep(0, len(receiver.successes()) == 2),
        timeout=6,
        message="both scheduled sends",
    )
    first, second = receiver.successes()
    assert first.json()["data"]["order_id"] == short_order
    assert second.json()["data"]["order_id"] == long_order
    assert abs(first.at - short_due) <= 1.0
    assert abs(second.at - long_due) <= 1.0


async def test_a_configured_reminder_follows_the_order_created_notification(
    start_worker, amqp, cleanup_topology
):
    worker = await start_worker(channels=("log",), reminder_minutes=2 / 60)
    order_id, body = order_created()
    started = time.monotonic()
    await publish(amqp, cleanup_topology, body)

    await wait_until(lambda: audit_of(worker, order_id), timeout=3, message="the first send")
    assert await audit_of(worker, order_id) == {"log": 1}

    async def reminded() -> bool:
        return (await audit_of(worker, order_id)).get("log:reminder") == 1

    await wait_until(reminded, timeout=5, message="the reminder")
    assert abs(time.monotonic() - started - 2.0) <= 1.0
    assert await audit_of(worker, order_id) == {"log": 1, "log:reminder": 1}
    # The hops that carried the reminder did not count the first send as a duplicate.
    assert metric(worker, "skipped_duplicate_total", {"channel": "log"}) == 0
