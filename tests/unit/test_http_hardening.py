"""The ASGI hardening layers (common/http_limits.py, common/http_auth.py) on a tiny app and on the
order service's own app, without any infrastructure (nothing here reaches a database)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, get, post
from litestar.middleware import DefineMiddleware

from common.http import exception_handlers
from common.http_auth import ApiKeyAuthMiddleware, caller_of, parse_api_keys
from common.http_limits import RateLimitMiddleware, RequestTimeoutMiddleware, TokenBucketLimiter
from order_service.app import create_app
from order_service.settings import OrderSettings

PROBLEM = "application/problem+json"


@get("/slow")
async def slow() -> dict[str, str]:
    await asyncio.sleep(5)
    return {"status": "late"}


@get("/fast")
async def fast() -> dict[str, str]:
    return {"status": "ok"}


@post("/things", status_code=201)
async def create_thing() -> dict[str, str]:
    return {"status": "created"}


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


def tiny_app(*middleware: DefineMiddleware) -> Litestar:
    return Litestar(
        route_handlers=[slow, fast, create_thing, live],
        middleware=list(middleware),
        exception_handlers=exception_handlers(),
    )


def client_for(app: Any, client_ip: str = "10.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- request time limit -------------------------------------------------------------------


async def test_a_request_slower_than_the_time_limit_gets_a_503_problem_quickly() -> None:
    app = tiny_app(DefineMiddleware(RequestTimeoutMiddleware, timeout=0.2))
    async with client_for(app) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await client.get("/slow")
        elapsed = loop.time() - started
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["status"] == 503 and body["instance"] == "/slow"
    assert elapsed < 2


async def test_a_request_within_the_time_limit_is_answered_normally() -> None:
    app = tiny_app(DefineMiddleware(RequestTimeoutMiddleware, timeout=2))
    async with client_for(app) as client:
        response = await client.get("/fast")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_a_zero_time_limit_turns_the_limit_off() -> None:
    middleware = RequestTimeoutMiddleware(tiny_app(), timeout=0)
    async with client_for(middleware) as client:
        assert (await client.get("/fast")).status_code == 200


# --- rate limit -----------------------------------------------------------------------------


def test_the_token_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucketLimiter(rate=2, burst=3, clock=clock)
    assert [bucket.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.acquire("a") == pytest.approx(0.5)
    assert bucket.acquire("b") == 0.0  # another client has its own bucket
    clock.now += 0.5
    assert bucket.acquire("a") == 0.0


def test_the_token_bucket_keeps_a_bounded_number_of_clients() -> None:
    bucket = TokenBucketLimiter(rate=1, burst=1, max_keys=100)
    for i in range(1000):
        bucket.acquire(f"client-{i}")
    assert len(bucket._buckets) == 100


async def test_a_client_over_its_rate_gets_429_problem_with_retry_after() -> None:
    clock = FakeClock()
    app = tiny_app(DefineMiddleware(RateLimitMiddleware, rate=1, burst=2, clock=clock))
    async with client_for(app) as client:
        statuses = [(await client.get("/fast")).status_code for _ in range(2)]
        limited = await client.get("/fast")
    assert statuses == [200, 200]
    assert limited.status_code == 429
    assert limited.headers["content-type"] == PROBLEM
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["status"] == 429


async def test_the_rate_limit_is_per_client_address_and_exempts_health_checks() -> None:
    clock = FakeClock()
    app = tiny_app(DefineMiddleware(RateLimitMiddleware, rate=1, burst=1, clock=clock))
    async with client_for(app, "10.0.0.1") as first, client_for(app, "10.0.0.2") as second:
        assert (await first.get("/fast")).status_code == 200
        assert (await first.get("/fast")).status_code == 429
        assert (await second.get("/fast")).status_code == 200
        assert all([(await first.get("/health/live")).status_code == 200 for _ in range(5)])
        clock.now += 1.0
        assert (await first.get("/fast")).status_code == 200


# --- API keys -------------------------------------------------------------------------------


async def test_without_configured_keys_writes_need_no_credentials() -> None:
    app = tiny_app(DefineMiddleware(ApiKeyAuthMiddleware, keys=()))
    async with client_for(app) as client:
        assert (await client.post("/things")).status_code == 201


async def test_a_write_without_a_key_gets_401_problem_with_www_authenticate() -> None:
    app = tiny_app(DefineMiddleware(ApiKeyAuthMiddleware, keys=("k-123",), realm="orders"))
    async with client_for(app) as client:
        response = await client.post("/things")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"] == 'Bearer realm="orders"'
    assert response.json()["status"] == 401


async def test_a_wrong_key_is_refused_with_invalid_token() -> None:
    app = tiny_app(DefineMiddleware(ApiKeyAuthMiddleware, keys=("k-123",)))
    async with client_for(app) as client:
        response = await client.post("/things", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "nope" not in response.text


async def test_a_valid_bearer_token_or_x_api_key_is_let_through() -> None:
    hashed = "sha256:" + hashlib.sha256(b"k-456").hexdigest()
    app = tiny_app(DefineMiddleware(ApiKeyAuthMiddleware, keys=("k-123", hashed)))
    async with client_for(app) as client:
        assert (
            await client.post("/things", headers={"Authorization": "Bearer k-123"})
        ).status_code == 201
        assert (await client.post("/things", headers={"X-API-Key": "k-456"})).status_code == 201
        assert (await client.get("/fast", headers={"X-API-Key": "k-456"})).status_code == 200


async def test_with_keys_on_a_read_needs_a_key_too_while_health_stays_open() -> None:
    """Issue 13 security: GET /orders listed every customer's orders without a key."""
    app = tiny_app(DefineMiddleware(ApiKeyAuthMiddleware, keys=("k-123",)))
    async with client_for(app) as client:
        refused = await client.get("/fast")
        assert refused.status_code == 401
        assert refused.headers["content-type"] == PROBLEM
        assert (await client.get("/health/live")).status_code == 200


@get("/whoami")
async def whoami(request: Request[Any, Any, Any]) -> dict[str, str | None]:
    return {"caller": caller_of(request.scope)}


async def test_the_caller_is_a_digest_of_its_key_the_same_for_a_hashed_configured_key() -> None:
    hashed = "sha256:" + hashlib.sha256(b"k-456").hexdigest()
    app = Litestar(
        route_handlers=[whoami],
        middleware=[DefineMiddleware(ApiKeyAuthMiddleware, keys=("k-123", hashed))],
    )
    async with client_for(app) as client:
        one = (await client.get("/whoami", headers={"X-API-Key": "k-123"})).json()["caller"]
        two = (await client.get("/whoami", headers={"X-API-Key": "k-456"})).json()["caller"]
    assert one == hashlib.sha256(b"k-123").hexdigest()
    assert two == hashlib.sha256(b"k-456").hexdigest()
    assert "k-123" not in one
    async with client_for(Litestar(route_handlers=[whoami])) as client:
        assert (await client.get("/whoami")).json()["caller"] is None


def test_a_malformed_hashed_key_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        parse_api_keys(["sha256:xyz"])
    with pytest.raises(ValueError):
        parse_api_keys(["sha256:abcd"])
    assert parse_api_keys(["", " "]) == ()


# --- wired into the order service -----------------------------------------------------------


@pytest.fixture
async def hardened_order_client() -> AsyncIterator[httpx.AsyncClient]:
    settings = OrderSettings.from_env(
        {
            "ORDERFLOW_ENV": "local",
            "ORDER_API_KEYS": "secret-key-1,secret-key-2",
            "ORDER_RATE_LIMIT_PER_SECOND": "1",
            "ORDER_RATE_LIMIT_BURST": "3",
            "ORDER_RELAY_ENABLED": "false",
            # Nothing listens here: the layers must answer before any handler needs MySQL.
            "ORDER_DATABASE_URL": "mysql+aiomysql://nobody:pw@127.0.0.1:9/none",
        }
    )
    app = create_app(settings, configure_logs=False)
    async with client_for(app) as client:
        yield client


async def test_order_api_settings_default_to_open_unlimited_with_a_time_limit() -> None:
    settings = OrderSettings.from_env({"ORDERFLOW_ENV": "local"})
    assert settings.api_keys == ()
    assert settings.rate_limit_per_second == 0
    assert settings.request_timeout_seconds == 10
    assert "secret" not in repr(
        OrderSettings.from_env({"ORDERFLOW_ENV": "local", "ORDER_API_KEYS": "secret"})
    )


async def test_order_api_refuses_an_unauthenticated_post_and_counts_it(
    hardened_order_client: httpx.AsyncClient,
) -> None:
    response = await hardened_order_client.post("/orders", json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="orders"')
    assert "x-request-id" in response.headers  # still inside the request-context layer
    metrics = (await hardened_order_client.get("/metrics")).text
    assert 'order_service_http_rejected_total{reason="unauthorized"} 1.0' in metrics


async def test_order_api_refuses_an_unauthenticated_listing_but_not_health_or_metrics(
    hardened_order_client: httpx.AsyncClient,
) -> None:
    for path in ("/orders", "/orders/0b7f5d2e-8a3c-4a57-9d0e-1f2a3b4c5d6e"):
        response = await hardened_order_client.get(path)
        assert response.status_code == 401, path
    assert (await hardened_order_client.get("/health/live")).status_code == 200
    assert (await hardened_order_client.get("/metrics")).status_code == 200


async def test_order_api_validates_an_authenticated_post_as_usual(
    hardened_order_client: httpx.AsyncClient,
) -> None:
    response = await hardened_order_client.post(
        "/orders", json={"quantity": -1}, headers={"Authorization": "Bearer secret-key-2"}
    )
    assert response.status_code == 422


async def test_order_api_rate_limits_a_client_with_429_and_retry_after(
    hardened_order_client: httpx.AsyncClient,
) -> None:
    key = {"X-API-Key": "secret-key-1"}
    statuses = [
        (await hardened_order_client.get("/orders/not-a-uuid", headers=key)).status_code
        for _ in range(5)
    ]
    assert statuses[:3] == [404, 404, 404]
    assert 429 in statuses[3:]
    limited = await hardened_order_client.get("/orders/not-a-uuid", headers=key)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert (await hardened_order_client.get("/health/live")).status_code == 200


async def test_order_api_answers_an_oversized_body_with_413_problem() -> None:
    settings = OrderSettings.from_env(
        {"ORDERFLOW_ENV": "local", "ORDER_RELAY_ENABLED": "false", "ORDER_MAX_BODY_BYTES": "1024"}
    )
    app = create_app(settings, configure_logs=False)
    async with client_for(app) as client:
        response = await client.post(
            "/orders",
            content=b'{"customer_id":"' + b"x" * 4096 + b'"}',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
