"""Cached GET /orders/{id} answered before the request is built: same answer as the full
stack, counted the same, and never around the API-key layer."""

from __future__ import annotations

from tests.integration.orders.conftest import metric_value
from tests.integration.orders.test_orders_api import order_body

REQUESTS = "order_service_http_requests_total"
ROUTE = {"route": "/orders/{order_id}", "method": "GET", "status": "200"}


async def test_a_cache_hit_is_answered_like_the_full_stack_and_counted(order_client):
    async with order_client() as (client, container):
        created = (await client.post("/orders", json=order_body())).json()
        await container.redis.delete(f"order:v1:{created['id']}")
        before = metric_value(container, REQUESTS, ROUTE)
        miss = await client.get(f"/orders/{created['id']}", headers={"x-request-id": "r-miss"})
        hit = await client.get(f"/orders/{created['id']}", headers={"x-request-id": "r-hit"})
        assert miss.status_code == hit.status_code == 200
        assert hit.content == miss.content and hit.json() == created
        assert hit.headers["content-type"] == miss.headers["content-type"] == "application/json"
        assert hit.headers["x-request-id"] == "r-hit" and miss.headers["x-request-id"] == "r-miss"
        assert int(hit.headers["content-length"]) == len(hit.content)
        assert metric_value(container, REQUESTS, ROUTE) == before + 2


async def test_a_miss_asks_redis_once(order_client):
    async with order_client() as (client, container):
        created = (await client.post("/orders", json=order_body())).json()
        await container.redis.delete(f"order:v1:{created['id']}")
        labels = {"result": "miss"}
        misses = metric_value(container, "order_service_cache_requests_total", labels)
        assert (await client.get(f"/orders/{created['id']}")).status_code == 200
        after = metric_value(container, "order_service_cache_requests_total", labels)
        assert after == misses + 1


async def test_with_api_keys_a_cached_order_is_not_served_without_a_key(order_client):
    async with order_client(api_keys=("k-1",)) as (client, _):
        created = await client.post("/orders", json=order_body(), headers={"x-api-key": "k-1"})
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        with_key = await client.get(f"/orders/{order_id}", headers={"x-api-key": "k-1"})
        assert with_key.status_code == 200  # now cached
        without = await client.get(f"/orders/{order_id}")
        assert without.status_code == 401
