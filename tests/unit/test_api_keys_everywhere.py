"""Issue 13 security: with keys set, the analytics API and the notification worker's audit
endpoint need a key like the order API; health and metrics stay open for probes and scrapes.
No infrastructure: the auth layer answers before any handler needs a database."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from analytics_service.app import create_app as analytics_app
from analytics_service.settings import AnalyticsSettings
from common.observability import Metrics
from notification_worker.app import create_app as notification_app
from notification_worker.settings import NotificationSettings
from tests.unit.notifications.fakes import FakeSentStore, idle_host

PROBLEM = "application/problem+json"


def client_for(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def always() -> bool:
    return True


async def test_the_analytics_api_with_keys_refuses_a_read_without_one() -> None:
    settings = AnalyticsSettings.from_env(
        {
            "ORDERFLOW_ENV": "local",
            "ANALYTICS_API_KEYS": "ak-1",
            # Nothing listens here: only the auth layer may answer.
            "ANALYTICS_DATABASE_URL": "mysql+aiomysql://nobody:pw@127.0.0.1:9/none",
        }
    )
    app = analytics_app(settings, configure_logs=False)
    async with client_for(app) as client:
        for path in ("/analytics/summary", "/analytics/top-products"):
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.headers["content-type"] == PROBLEM
            assert response.headers["www-authenticate"].startswith('Bearer realm="analytics"')
        wrong = await client.get("/analytics/summary", headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        assert (await client.get("/health/live")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'analytics_service_http_rejected_total{reason="unauthorized"} 3.0' in metrics


async def test_the_analytics_api_reads_the_key_setting_and_stays_open_without_it() -> None:
    local = AnalyticsSettings.from_env({"ORDERFLOW_ENV": "local"})
    assert local.api_keys == ()
    keyed = AnalyticsSettings.from_env({"ORDERFLOW_ENV": "local", "ANALYTICS_API_KEYS": "a,b"})
    assert keyed.api_keys == ("a", "b")
    assert "api_keys" not in repr(keyed)


async def test_the_notification_audit_with_keys_needs_one_and_answers_with_it() -> None:
    store = FakeSentStore()
    order = str(uuid.uuid4())
    store.audits[order] = {"log": 1}
    app = notification_app(
        store,
        Metrics("nw_keys"),
        idle_host({"broker": always, "redis": store.ping}),
        api_keys=("nk-1",),
    )
    body = {"order_ids": [order]}
    async with client_for(app) as client:
        refused = await client.post("/notifications/audit", json=body)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Bearer realm="notifications"')
        allowed = await client.post(
            "/notifications/audit", json=body, headers={"Authorization": "Bearer nk-1"}
        )
        assert allowed.status_code == 200
        assert allowed.json()["orders"] == [{"order_id": order, "sends": {"log": 1}}]
        assert (await client.get("/health/live")).status_code == 200


def test_the_notification_worker_reads_its_key_setting() -> None:
    settings = NotificationSettings.from_env({"ORDERFLOW_ENV": "local", "NOTIFY_API_KEYS": "x"})
    assert settings.api_keys == ("x",)
    assert "api_keys" not in repr(settings)
