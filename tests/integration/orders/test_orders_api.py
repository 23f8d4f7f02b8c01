"""The order API against real MariaDB and Redis."""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

from common.testing import unique_name, wait_until
from tests.integration.orders.conftest import metric_value

pytestmark = pytest.mark.integration


def order_body(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "customer_id": unique_name("cust"),
        "product_id": "prod-1",
        "quantity": 2,
        "total_amount": "19.98",
        "currency": "USD",
    }
    body.update(overrides)
    return body


async def test_created_order_is_returned_with_location_and_exact_amount(order_client):
    async with order_client() as (client, _):
        response = await client.post("/orders", json=order_body(total_amount="19.98"))
        assert response.status_code == 201
        order = response.json()
        assert response.headers["location"] == f"/orders/{order['id']}"
        assert uuid.UUID(order["id"])
        assert order["status"] == "created"
        assert order["total_amount"] == "19.98"
        assert order["created_at"] == order["updated_at"]


@pytest.mark.parametrize("raw", ['"0.1"', "0.1", "0.10"])
async def test_amount_as_string_or_number_is_exactly_ten_cents(order_client, raw):
    async with order_client() as (client, _):
        customer = unique_name("c")
        body = (
            f'{{"customer_id": "{customer}", "product_id": "p", "quantity": 1, '
            f'"total_amount": {raw}}}'
        )
        response = await client.post(
            "/orders", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 201, response.text
        assert response.json()["total_amount"] == "0.10"
        fetched = await client.get(response.headers["location"])
        assert Decimal(fetched.json()["total_amount"]) == Decimal("0.10")


async def test_second_get_is_served_from_the_cache(order_client):
    async with order_client() as (client, container):
        created = (await client.post("/orders", json=order_body())).json()
        await container.redis.delete(f"order:v1:{created['id']}")
        hits = metric_value(container, "order_service_cache_requests_total", {"result": "hit"})
        misses = metric_value(container, "order_service_cache_requests_total", {"result": "miss"})

        first = await client.get(f"/orders/{created['id']}")
        second = await client.get(f"/orders/{created['id']}")

        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() == created
        assert (
            metric_value(container, "order_service_cache_requests_total", {"result": "miss"})
            == misses + 1
        )
        assert (
            metric_value(container, "order_service_cache_requests_total", {"result": "hit"})
            == hits + 1
        )


async def test_unknown_and_malformed_order_ids_are_404_problems(order_client):
    async with order_client() as (client, _):
        for path in (f"/orders/{uuid.uuid4()}", "/orders/not-a-uuid", "/orders/%00"):
            response = await client.get(path)
            assert response.status_code == 404, path
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["status"] == 404


async def test_redis_unreachable_still_serves_post_and_get_from_mysql(order_client):
    async with order_client(redis_url="redis://127.0.0.1:1/0") as (client, container):
        created = await client.post("/orders", json=order_body())
        assert created.status_code == 201
        fetched = await client.get(created.headers["location"])
        assert fetched.status_code == 200
        assert fetched.json() == created.json()
        errors = metric_value(container, "order_service_cache_requests_total", {"result": "error"})
        bypassed = metric_value(
            container, "order_service_cache_requests_total", {"result": "bypassed"}
        )
        assert errors + bypassed >= 1

        async def ready() -> httpx.Response | None:
            answer = await client.get("/health/ready")
            return answer if answer.status_code == 200 else None

        # Ready (once its consumers consume) with Redis down: Redis is not required.
        answer = await wait_until(ready, timeout=10, message="ready without Redis")
        assert answer is not None and answer.json()["checks"]["redis"] == "down"


async def test_listing_pages_newest_first_with_a_cursor(order_client):
    customer = unique_name("lister")
    async with order_client() as (client, _):
        ids = []
        for _ in range(5):
            ids.append(
                (await client.post("/orders", json=order_body(customer_id=customer))).json()["id"]
            )
        seen: list[str] = []
        cursor = None
        while True:
            params = {"customer_id": customer, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/orders", params=params)).json()
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == list(reversed(ids))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 100000}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "lost"}, "status"),
        ({"cursor": "!!!"}, "cursor"),
        # Issue 13 item 9: a well-formed cursor whose time overflows in UTC answered 500.
        (
            {
                "cursor": "MDAwMS0wMS0wMVQwMDowMDowMCswMTowMHw4NjEwNzkyNy1kMTI1LTRlY2EtOTNhYS1h"
                "ZWQ4ZDdkYjY0ZmE"
            },
            "cursor",
        ),
        (
            {
                "cursor": "MDAwMS0wMS0wMVQwMDowMDowMCswMDowMHw4NjEwNzkyNy1kMTI1LTRlY2EtOTNhYS1h"
                "ZWQ4ZDdkYjY0ZmE"
            },
            "cursor",
        ),
    ],
)
async def test_invalid_listing_parameters_are_rejected_with_field_errors(
    order_client, params, field
):
    async with order_client() as (client, _):
        response = await client.get("/orders", params=params)
        assert response.status_code in (400, 422)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in response.text


async def test_request_id_is_echoed_or_generated(order_client):
    async with order_client() as (client, _):
        echoed = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
        assert echoed.headers["x-request-id"] == "abc-123"
        generated = await client.get("/health/live")
        assert len(generated.headers["x-request-id"]) >= 16


async def test_readiness_reports_each_dependency(order_client):
    async with order_client() as (client, container):
        assert container.relay is not None and container.fulfilment is not None
        await container.relay.wait_ready(10)
        # Readiness waits for every consumer task to consume (issue 14).
        await container.fulfilment.wait_ready(10)
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "ok"
        checks = body["checks"]
        assert {k: checks[k] for k in ("mysql", "redis", "rabbitmq")} == dict.fromkeys(
            ("mysql", "redis", "rabbitmq"), "up"
        )
        # Every supervised long-running task has its own check (rule 9).
        tasks = {k for k in checks if k not in ("mysql", "redis", "rabbitmq")}
        assert {"outbox-relay", "outbox-backlog"} <= tasks
        assert any(k.startswith("consumer:") and k.endswith(".orders.fulfilment") for k in tasks)
        assert all(checks[k] == "up" for k in tasks)


async def test_database_unreachable_answers_503_problem(order_client):
    url = "mysql+aiomysql://order_svc:order_svc_local@127.0.0.1:1/order_db"
    async with order_client(database_url=url, db_connect_timeout=1) as (client, _):
        response = await client.post("/orders", json=order_body())
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["retry-after"]
        ready = await client.get("/health/ready")
        assert ready.status_code == 503


async def test_metrics_endpoint_exports_the_order_metrics(order_client):
    async with order_client() as (client, _):
        await client.post("/orders", json=order_body())
        text = (await client.get("/metrics")).text
        for name in (
            "order_service_orders_created_total",
            "order_service_http_requests_total",
            "order_service_http_request_duration_seconds_bucket",
            "order_service_outbox_pending_rows",
            "order_service_outbox_oldest_pending_age_seconds",
            "order_service_cache_requests_total",
        ):
            assert name in text, name


async def test_openapi_schema_is_served_offline(order_client):
    async with order_client() as (client, _):
        schema = (await client.get("/schema/openapi.json")).json()
        assert "/orders" in schema["paths"]
        assert "post" in schema["paths"]["/orders"]
