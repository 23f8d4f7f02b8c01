"""``python -m order_service fulfilment``: with ``ORDER_FULFILMENT_IN_API=false`` the API process
takes orders and a process of its own pays and confirms them (make run's layout)."""

from __future__ import annotations

import dataclasses

import pytest

from common.testing_http import serve_app
from order_service.fulfilment_app import create_fulfilment_app
from order_service.settings import OrderSettings
from tests.integration.orders.conftest import metric_value
from tests.integration.orders.lifecycle_helpers import event_types, place, wait_status

pytestmark = pytest.mark.integration

CONSUMED = "order_service_events_consumed_total"


async def test_the_fulfilment_process_confirms_what_the_api_process_took(
    order_client, order_settings: OrderSettings
):
    # One env for both processes, as a deployment gives them.
    separate = dataclasses.replace(order_settings, fulfilment_in_api=False)
    fulfilment = create_fulfilment_app(separate, configure_logs=False)
    async with (
        order_client(fulfilment_in_api=False) as (client, api),
        serve_app(fulfilment) as worker,
    ):
        ready = (await client.get("/health/ready")).json()["checks"]
        assert not [name for name in ready if name.startswith("consumer:")]
        worker_ready = (await worker.get("/health/ready")).json()["checks"]
        assert {
            f"consumer:{order_settings.topology.fulfilment_queue}",
            f"consumer:{order_settings.topology.scheduler_queue}",
        } <= set(worker_ready)
        assert (await worker.post("/orders", json={})).status_code in (404, 405)

        created = await place(client)
        order = await wait_status(client, created["id"], {"confirmed"})
        assert [e["status"] for e in order["timeline"]] == ["created", "paid", "confirmed"]
        assert await event_types(api, created["id"]) == [
            "OrderCreated",
            "OrderPaid",
            "OrderConfirmed",
        ]
        # Paid by the fulfilment process, not by the API process.
        confirmed = {"event_type": "OrderCreated", "outcome": "confirmed"}
        assert metric_value(fulfilment.state.container, CONSUMED, confirmed) >= 1
        assert metric_value(api, CONSUMED, confirmed) == 0


def test_the_fulfilment_process_listens_on_its_own_port_and_is_off_by_default():
    settings = OrderSettings.from_env(
        {"ORDERFLOW_ENV": "local", "ORDER_FULFILMENT_HTTP_PORT": "9184"}
    )
    assert (settings.http_port, settings.fulfilment_http_port) == (8080, 9184)
    assert settings.fulfilment_in_api  # without the setting, one process does everything
