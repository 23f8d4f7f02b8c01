"""Rule 9 for the outbox relay: a relay task that stops unexpectedly is logged, restarted with
backoff, named by readiness while down, and publishes again after its restart."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from common.testing import wait_until
from order_service.adapters.outbox_relay import OutboxRelay
from order_service.ports import OutboxEvent
from tests.integration.orders.conftest import metric_value
from tests.integration.orders.test_orders_api import order_body

pytestmark = pytest.mark.integration

RESTARTS = "order_service_task_restarts_total"


async def test_a_relay_that_crashes_is_restarted_and_publishes_again(
    order_client, monkeypatch: pytest.MonkeyPatch
):
    real_publish, real_pause = OutboxRelay.publish_fresh, OutboxRelay._pause
    crashes: list[int] = []

    async def fail_once(self: OutboxRelay, batch: list[OutboxEvent]) -> int:
        if not crashes:
            raise RuntimeError("a publish failure, which the loop handles with a pause")
        return await real_publish(self, batch)

    async def crash_in_the_pause(self: OutboxRelay, seconds: float) -> None:
        if not crashes:
            crashes.append(1)
            raise AssertionError("a bug that escapes the relay loop")
        await real_pause(self, seconds)

    with capture_logs() as logs:
        async with order_client(fulfilment_enabled=False) as (client, container):
            assert container.relay is not None and await container.relay.wait_ready(10)
            monkeypatch.setattr(OutboxRelay, "publish_fresh", fail_once)
            monkeypatch.setattr(OutboxRelay, "_pause", crash_in_the_pause)
            assert (await client.post("/orders", json=order_body())).status_code == 201

            async def restarted() -> bool:
                return metric_value(container, RESTARTS, {"task": "outbox-relay"}) >= 1

            await wait_until(restarted, timeout=15, message="the relay restarted")
            assert crashes, "the relay never crashed: no fault happened"
            ready = await client.get("/health/ready")
            assert "outbox-relay" in ready.json()["checks"]

            published = "order_service_events_published_total"
            labels = {"event_type": "OrderCreated"}
            before = metric_value(container, published, labels)
            assert (await client.post("/orders", json=order_body())).status_code == 201

            async def published_again() -> bool:
                return metric_value(container, published, labels) >= before + 1

            await wait_until(published_again, timeout=20, message="publishing after restart")
    stopped = [e for e in logs if e.get("event") == "task_stopped_unexpectedly"]
    assert stopped and stopped[0]["task"] == "outbox-relay"
