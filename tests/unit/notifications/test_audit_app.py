"""The audit endpoint's contract, with an in-memory sent store."""

from __future__ import annotations

import uuid

from litestar.testing import AsyncTestClient

from common.observability import Metrics
from notification_worker.app import create_app
from tests.unit.notifications.fakes import FakeSentStore, idle_host


async def always() -> bool:
    return True


def app(store: FakeSentStore):
    return create_app(store, Metrics("nw_test"), idle_host({"broker": always, "redis": store.ping}))


async def test_the_audit_counts_sends_per_channel_and_lists_missing_orders():
    store = FakeSentStore()
    sent, unsent = str(uuid.uuid4()), str(uuid.uuid4())
    store.audits[sent] = {"log": 1, "webhook": 2}
    async with AsyncTestClient(app(store)) as client:
        response = await client.post(
            "/notifications/audit", json={"order_ids": [sent, unsent, sent]}
        )
    assert response.status_code == 200
    assert response.json() == {
        "orders": [{"order_id": sent, "sends": {"log": 1, "webhook": 2}}],
        "missing": [unsent],
    }


async def test_the_audit_answers_503_when_the_records_are_unreachable():
    store = FakeSentStore()
    store.down = True
    async with AsyncTestClient(app(store)) as client:
        response = await client.post(
            "/notifications/audit", json={"order_ids": [str(uuid.uuid4())]}
        )
        ready = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert ready.status_code == 503
    assert ready.json()["checks"]["redis"] == "down"


async def test_the_audit_refuses_more_than_ten_thousand_orders():
    ids = [str(uuid.uuid4()) for _ in range(10_001)]
    async with AsyncTestClient(app(FakeSentStore())) as client:
        response = await client.post("/notifications/audit", json={"order_ids": ids})
    assert response.status_code == 422
