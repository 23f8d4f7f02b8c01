"""Scheduled orders: stored as scheduled, started on time through the delay tiers (no polling),
and never started once cancelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from common.testing import wait_until
from tests.integration.orders.conftest import metric_value
from tests.integration.orders.lifecycle_helpers import event_types, order_body, wait_status

pytestmark = pytest.mark.integration

CONSUMED = "order_service_events_consumed_total"


async def test_a_scheduled_order_starts_within_a_second_of_its_time_and_is_fulfilled(order_client):
    async with order_client() as (client, container):
        due = datetime.now(UTC) + timedelta(seconds=3)
        response = await client.post("/orders", json=order_body(scheduled_time=due.isoformat()))
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["status"] == "scheduled"
        assert datetime.fromisoformat(created["scheduled_time"]) == due
        order = await wait_status(client, created["id"], {"confirmed"}, timeout=20)
        statuses = [e["status"] for e in order["timeline"]]
        assert statuses == ["scheduled", "created", "paid", "confirmed"]
        started = datetime.fromisoformat(order["timeline"][1]["at"])
        assert abs((started - due).total_seconds()) <= 1.0, started - due
        assert (await event_types(container, created["id"]))[:2] == [
            "OrderScheduled",
            "OrderCreated",
        ]


async def test_a_scheduled_order_cancelled_before_its_time_never_starts(order_client):
    async with order_client() as (client, container):
        due = datetime.now(UTC) + timedelta(seconds=2)
        response = await client.post("/orders", json=order_body(scheduled_time=due.isoformat()))
        order_id = response.json()["id"]
        cancel = await client.post(f"/orders/{order_id}/cancel")
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"

        async def scheduler_let_go() -> bool:
            labels = {"event_type": "OrderScheduled", "outcome": "cancelled"}
            return metric_value(container, CONSUMED, labels) >= 1

        await wait_until(scheduler_let_go, timeout=10, message="the scheduler to drop the order")
        order = (await client.get(f"/orders/{order_id}")).json()
        assert [e["status"] for e in order["timeline"]] == ["scheduled", "cancelled"]
        assert await event_types(container, order_id) == ["OrderScheduled", "OrderCancelled"]
        assert container.gateway.charge_calls == 0


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        (timedelta(seconds=-5), "must be in the future"),
        (timedelta(days=8), "must be at most 7 days ahead"),
    ],
)
async def test_a_start_time_in_the_past_or_beyond_the_horizon_is_422(order_client, offset, message):
    async with order_client(fulfilment_enabled=False) as (client, _):
        when = (datetime.now(UTC) + offset).isoformat()
        response = await client.post("/orders", json=order_body(scheduled_time=when))
        assert response.status_code == 422
        errors = response.json()["errors"]
        assert errors == [{"field": "scheduled_time", "message": message}]


async def test_a_start_time_without_an_offset_is_422(order_client):
    async with order_client(fulfilment_enabled=False) as (client, _):
        response = await client.post(
            "/orders", json=order_body(scheduled_time="2030-01-01T10:00:00")
        )
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == ["scheduled_time"]
