"""The analytics API over real MariaDB and Redis, fed by the real consumer."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from common.testing import unique_name, wait_until
from tests.integration.analytics.conftest import order_event

pytestmark = pytest.mark.integration


def _random_past_hour() -> datetime:
    """An hour nobody else writes to, so its buckets hold only this test's orders."""
    base = datetime(1990, 1, 1, tzinfo=UTC)
    return base + timedelta(hours=random.randrange(24 * 365 * 10))


async def test_summary_cache_reflects_a_new_order_within_the_documented_bound(
    start_consumer, publisher, db, api, settings
):
    await start_consumer()
    first = await api.get("/analytics/summary")  # fills the cache
    assert first.status_code == 200
    before = first.json()

    event = order_event(amount="3.25", currency="NOK")
    await publisher.publish([event])
    await db.wait_for_facts([event.data.order_id])
    applied = time.monotonic()

    def nok(body: dict) -> tuple[int, Decimal]:
        return (
            next((c["total_orders"] for c in body["by_currency"] if c["currency"] == "NOK"), 0),
            Decimal(body["total_revenue"].get("NOK", "0")),
        )

    async def reflected() -> dict | None:
        body = (await api.get("/analytics/summary")).json()
        return body if nok(body) == (nok(before)[0] + 1, nok(before)[1] + Decimal("3.25")) else None

    await wait_until(
        reflected,
        timeout=settings.summary_ttl_seconds + 1.0,
        message="the summary showing the new order",
    )
    assert time.monotonic() - applied <= settings.summary_ttl_seconds + 0.5


Bucket = tuple[int, dict[str, Decimal]]


async def _buckets(api, **params: str) -> list[Bucket]:
    response = await api.get("/analytics/revenue", params=params)
    assert response.status_code == 200, response.text
    return [
        (b["order_count"], {c: Decimal(v) for c, v in b["revenue"].items()})
        for b in response.json()["buckets"]
    ]


def _added(before: list[Bucket], after: list[Bucket]) -> list[Bucket]:
    """What this test's orders added to each bucket: a random past hour is rarely shared, but
    its day can be (two runs of this test on one database met on 1990-04-29)."""
    assert len(before) == len(after)
    return [
        (
            count - old_count,
            {
                c: amount - old.get(c, Decimal(0))
                for c, amount in revenue.items()
                if amount != old.get(c, Decimal(0))
            },
        )
        for (old_count, old), (count, revenue) in zip(before, after, strict=True)
    ]


async def test_revenue_buckets_sum_orders_per_hour_and_day_exactly(
    start_consumer, publisher, db, api
):
    hour = _random_past_hour()
    events = [
        order_event(amount="10.10", created_at=hour + timedelta(minutes=5)),
        order_event(amount="0.05", created_at=hour + timedelta(minutes=59)),
        order_event(amount="7.00", currency="EUR", created_at=hour + timedelta(minutes=30)),
        order_event(amount="1.11", created_at=hour + timedelta(hours=2)),
    ]
    window = {"from": hour.isoformat(), "to": (hour + timedelta(hours=3)).isoformat()}
    queries = {
        "hourly": {**window, "granularity": "hour"},
        "hourly USD": {**window, "granularity": "hour", "currency": "USD"},
        "daily USD": {**window, "granularity": "day", "currency": "USD"},
    }
    await start_consumer()
    before = {name: await _buckets(api, **q) for name, q in queries.items()}
    await publisher.publish(events)
    await db.wait_for_facts([e.data.order_id for e in events])
    added = {name: _added(before[name], await _buckets(api, **q)) for name, q in queries.items()}

    assert added["hourly"] == [
        (3, {"EUR": Decimal("7.00"), "USD": Decimal("10.15")}),
        (0, {}),
        (1, {"USD": Decimal("1.11")}),
    ]
    assert [count for count, _ in added["hourly USD"]] == [2, 0, 1]
    assert sum(count for count, _ in added["daily USD"]) == 3
    assert sum(r.get("USD", Decimal(0)) for _, r in added["daily USD"]) == Decimal("11.26")


async def test_revenue_rejects_an_unbounded_range_with_a_problem(api):
    response = await api.get(
        "/analytics/revenue",
        params={
            "from": "2000-01-01T00:00:00Z",
            "to": "2020-01-01T00:00:00Z",
            "granularity": "hour",
        },
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == "from"


async def test_audit_returns_applied_orders_with_exact_amounts_and_lists_missing_ones(
    start_consumer, publisher, db, api
):
    events = [order_event(amount="12.50"), order_event(amount="1500", currency="JPY")]
    await start_consumer()
    await publisher.publish(events)
    await db.wait_for_facts([e.data.order_id for e in events])
    missing = uuid.uuid4()

    response = await api.post(
        "/analytics/audit",
        json={"order_ids": [str(e.data.order_id) for e in events] + [str(missing)]},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["missing"] == [str(missing)]
    by_id = {o["order_id"]: o for o in body["orders"]}
    first = by_id[str(events[0].data.order_id)]
    assert (first["total_amount"], first["currency"]) == ("12.50", "USD")
    assert by_id[str(events[1].data.order_id)]["total_amount"] == "1500"
    occurred = datetime.fromisoformat(first["occurred_at"])
    applied = datetime.fromisoformat(first["applied_at"])
    assert occurred == events[0].occurred_at
    assert occurred <= applied <= datetime.now(UTC)


async def test_top_lists_rank_by_revenue_and_validate_the_limit(start_consumer, publisher, db, api):
    await start_consumer()
    hour = _random_past_hour()
    customer = unique_name("cust")
    products = [unique_name("prod") for _ in range(3)]
    events = [
        order_event(product_id=p, customer_id=customer, amount=a, created_at=hour)
        for p, a in zip(products, ("5.00", "9.00", "7.00"), strict=True)
    ]
    await publisher.publish(events)
    await db.wait_for_facts([e.data.order_id for e in events])

    response = await api.get("/analytics/top-products", params={"limit": "100"})
    assert response.status_code == 200
    items = response.json()["items"]
    revenues = [Decimal(i["revenue"]) for i in items]
    assert revenues == sorted(revenues, reverse=True)
    assert [i["rank"] for i in items] == list(range(1, len(items) + 1))

    bad = await api.get("/analytics/top-customers", params={"limit": "0"})
    assert bad.status_code == 422
    assert bad.json()["errors"] == [{"field": "limit", "message": "must be between 1 and 100"}]
