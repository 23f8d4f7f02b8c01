"""The API's validation, error format and cache behaviour, over in-memory fakes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from analytics_service.app import create_app
from analytics_service.event_facts import fact_from_event
from analytics_service.services import AnalyticsQueries
from analytics_service.settings import AnalyticsSettings
from tests.unit.analytics.fakes import FakeStore, FakeSummaryCache, order_delivery

PROBLEM = "application/problem+json"


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def cache() -> FakeSummaryCache:
    return FakeSummaryCache()


@pytest.fixture
async def client(store, cache) -> AsyncIterator[AsyncTestClient[Any]]:
    # Nothing connects while building the app, so no database or Redis is needed here.
    app = create_app(AnalyticsSettings(audit_max_ids=3), configure_logs=False)
    app.state.queries = AnalyticsQueries(store, cache)
    async with AsyncTestClient(app=app) as client:
        yield client


async def _apply(store: FakeStore, **kwargs: Any) -> uuid.UUID:
    delivery = order_delivery(**kwargs)
    fact = fact_from_event(delivery.envelope, delivery.event)
    await store.apply("analytics", [fact], delivery.envelope.occurred_at)
    return fact.order_id


async def test_summary_gives_exact_totals_per_currency(client, store):
    await _apply(store, amount="10.00")
    await _apply(store, amount="2.55")
    await _apply(store, amount="7.00", currency="EUR")
    body = (await client.get("/analytics/summary")).json()
    assert body["total_orders"] == 3
    assert body["total_revenue"] == {"EUR": "7.00", "USD": "12.55"}
    assert body["average_order_value"] == {"EUR": "7.00", "USD": "6.275"}


async def test_summary_is_served_from_cache_until_invalidated(client, store, cache):
    assert (await client.get("/analytics/summary")).headers["x-cache"] == "miss"
    await _apply(store)
    cached = await client.get("/analytics/summary")
    assert cached.headers["x-cache"] == "hit" and cached.json()["total_orders"] == 0
    await cache.invalidate()
    fresh = await client.get("/analytics/summary")
    assert fresh.headers["x-cache"] == "miss" and fresh.json()["total_orders"] == 1


async def test_summary_comes_from_the_database_when_redis_is_down(client, store, cache):
    cache.down = True
    await _apply(store)
    assert (await client.get("/analytics/summary")).json()["total_orders"] == 1


async def test_summary_serves_the_last_known_value_while_the_database_is_down(client, store, cache):
    await client.get("/analytics/summary")
    await cache.invalidate()
    store.down = True
    response = await client.get("/analytics/summary")
    assert response.status_code == 200 and response.headers["x-cache"] == "stale"


async def test_summary_is_503_when_the_database_is_down_and_redis_has_nothing(client, store, cache):
    store.down, cache.down = True, True
    response = await client.get("/analytics/summary")
    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-01-01T00:00:00"}, "from"),
        ({"to": "2026-13-01T00:00:00Z"}, "to"),
        ({"granularity": "week"}, "granularity"),
        ({"currency": "usd"}, "currency"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
        ({"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
    ],
)
async def test_invalid_revenue_queries_are_422_problems_naming_the_field(client, params, field):
    response = await client.get("/analytics/revenue", params=params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert [e["field"] for e in response.json()["errors"]] == [field]


@pytest.mark.parametrize("limit", ["0", "101", "ten", "-1"])
async def test_top_lists_reject_a_limit_out_of_range(client, limit):
    for path in ("/analytics/top-products", "/analytics/top-customers"):
        response = await client.get(path, params={"limit": limit})
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "limit"


async def test_top_products_rank_by_revenue_with_ties_by_id(client, store):
    await _apply(store, product_id="b", amount="5.00")
    await _apply(store, product_id="a", amount="5.00")
    await _apply(store, product_id="c", amount="9.00")
    body = (await client.get("/analytics/top-products", params={"limit": "2"})).json()
    assert [(i["rank"], i["product_id"], i["revenue"]) for i in body["items"]] == [
        (1, "c", "9.00"),
        (2, "a", "5.00"),
    ]


async def test_audit_lists_found_and_missing_orders(client, store):
    found = await _apply(store, amount="12.50")
    missing = uuid.uuid4()
    response = await client.post("/analytics/audit", json={"order_ids": [str(found), str(missing)]})
    assert response.status_code == 200
    body = response.json()
    assert body["missing"] == [str(missing)]
    assert body["orders"][0]["order_id"] == str(found)
    assert body["orders"][0]["total_amount"] == "12.50"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"order_ids": ["not-a-uuid"]}', 422),
        (b'{"order_ids": "x"}', 422),
        (b"{}", 422),
        (b'{"order_ids": [], "extra": 1}', 422),
    ],
)
async def test_bad_audit_bodies_are_problems_not_500s(client, body, status):
    response = await client.post(
        "/analytics/audit", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_audit_refuses_more_ids_than_the_maximum(client):
    ids = [str(uuid.uuid4()) for _ in range(4)]
    response = await client.post("/analytics/audit", json={"order_ids": ids})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "order_ids"


async def test_openapi_documents_the_response_bodies(client):
    schema = (await client.get("/schema/openapi.json")).json()
    names = set(schema["components"]["schemas"])
    assert {
        "SummaryResponse",
        "RevenueResponse",
        "TopProductsResponse",
        "TopCustomersResponse",
        "AuditResponse",
        "AuditRequest",
    } <= names
    assert "/analytics/audit" in schema["paths"]
