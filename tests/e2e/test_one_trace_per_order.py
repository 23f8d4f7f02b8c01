"""One ``POST /orders`` is one trace: the real processes export to an OTLP receiver of the
test's own, and every span about the order, in the order service, the analytics consumer and
the notification worker, carries the trace id of the POST (through the outbox, the broker and
the saga's own events)."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.system import RunningSystem
from tests.support.otlp_receiver import OtlpReceiver, ReceivedSpan

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SERVICES = ("order-service", "analytics-consumer", "notification-worker")


def about(order_id: str, spans: list[ReceivedSpan]) -> list[ReceivedSpan]:
    return [s for s in spans if s.attributes.get("order.id") == order_id]


def complete(order_id: str, spans: list[ReceivedSpan]) -> bool:
    """The POST, the saga's charge, the confirmation consumed by analytics, a send."""
    mine = about(order_id, spans)
    return (
        any(s.kind == "server" for s in mine)
        and any(s.name == "payment charge" for s in mine)
        and any(
            s.service == "analytics-consumer" and s.attributes.get("event.type") == "OrderConfirmed"
            for s in mine
        )
        and any(s.service == "notification-worker" and s.kind == "client" for s in mine)
    )


async def test_one_post_is_one_trace_in_the_order_service_analytics_and_notifications() -> None:
    async with OtlpReceiver() as otlp:
        env = {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            # The SDK's batch processor exports every 5 s by default.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        async with RunningSystem(env=env) as system:
            async with httpx.AsyncClient(base_url=system.order_url, timeout=10) as client:
                response = await client.post(
                    "/orders",
                    json={
                        "customer_id": "trace-c",
                        "product_id": "trace-p",
                        "quantity": 1,
                        "total_amount": "12.50",
                        "currency": "EUR",
                    },
                )
            assert response.status_code == 201, response.text
            order_id = response.json()["id"]
            trace_id = response.headers["traceresponse"].split("-")[1]
            spans = await otlp.wait_for(lambda spans: complete(order_id, spans), timeout=60)

    mine = about(order_id, spans)
    assert {s.service for s in mine} >= set(SERVICES)
    assert {s.trace_id for s in mine} == {trace_id}, sorted(
        (s.service, s.name, s.trace_id) for s in mine
    )
    consumed = {(s.service, s.attributes.get("event.type")) for s in mine if s.kind == "consumer"}
    assert ("analytics-consumer", "OrderCreated") in consumed
    assert ("analytics-consumer", "OrderConfirmed") in consumed
    assert any(service == "notification-worker" for service, _ in consumed)
    # Every publish of the order's events (the relay's spans carry no order id) is in it too.
    in_trace = [s for s in spans if s.trace_id == trace_id]
    assert any(s.kind == "producer" for s in in_trace)
