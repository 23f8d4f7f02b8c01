"""Issue 13 item 2: a MariaDB outage delays a scheduled order; it never spends the order's
attempts nor parks it (DESIGN.md §4 rule 7). One attempt allowed: any spent one would park."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url

from common.testing import TcpProxy, wait_until
from tests.integration.orders.conftest import metric_value
from tests.integration.orders.lifecycle_helpers import order_body, wait_status

pytestmark = pytest.mark.integration


async def test_a_scheduled_order_due_during_a_database_outage_starts_after_it_and_is_not_parked(
    order_client, order_settings
):
    url = make_url(order_settings.database_url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 3306).start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with order_client(database_url=proxied, fulfilment_max_attempts=1) as (
            client,
            container,
        ):
            due = datetime.now(UTC) + timedelta(seconds=2)
            response = await client.post("/orders", json=order_body(scheduled_time=due.isoformat()))
            assert response.status_code == 201, response.text
            order_id = response.json()["id"]

            def consumed(outcome: str) -> float:
                return metric_value(
                    container,
                    "order_service_events_consumed_total",
                    {"event_type": "OrderScheduled", "outcome": outcome},
                )

            async def held() -> bool:
                return consumed("deferred") >= 1

            await wait_until(held, timeout=10, message="the scheduler holding the order")
            await proxy.cut()

            async def deferred_by_the_outage() -> bool:
                return consumed("unavailable") >= 3

            await wait_until(deferred_by_the_outage, timeout=20, message="outage deferrals")
            assert consumed("parked") == 0
            await proxy.restore()

            order = await wait_status(client, order_id, {"confirmed"}, timeout=30)
            assert [e["status"] for e in order["timeline"]][:2] == ["scheduled", "created"]
            assert consumed("parked") == 0
            parked = metric_value(
                container,
                "order_service_events_parked_total",
                {"reason": "attempts_exhausted"},
            )
            assert parked == 0
    finally:
        await proxy.close()
