"""Order lifecycle events through the real consumer: exact final totals, in any order."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, text

from analytics_service.rebuild import rebuild
from common.testing import unique_name, wait_until
from tests.integration.analytics.conftest import consumed
from tests.unit.analytics.lifecycle import PATHS, Order, lifecycle, shuffled_with_duplicates

pytestmark = pytest.mark.integration

BOOKED = ("created", "paid", "confirmed")


async def _state(db, orders: list[Order]) -> dict[str, tuple[str, int]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT order_id, status, order_version FROM order_facts WHERE order_id IN :ids"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": [str(o.order_id) for o in orders]},
        )
        return {r[0]: (r[1], int(r[2])) for r in rows}


async def _rows(db, table: str, key_column: str, key: str) -> dict[str, tuple[int, Decimal]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(
            text(
                f"SELECT {key_column}, SUM(order_count), SUM(revenue) FROM {table} "
                f"WHERE currency = :c GROUP BY {key_column}"
            ),
            {"c": key},
        )
        return {str(r[0]): (int(r[1]), Decimal(r[2])) for r in rows if int(r[1]) or r[2]}


def _currency() -> str:
    """A rarely used code; totals are still compared as deltas, so a reuse cannot matter."""
    rng = random.Random()
    return "X" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(2))


def _minus(after: dict, before: dict) -> dict:
    out = {}
    for key in set(after) | set(before):
        a, b = after.get(key, (0, Decimal(0))), before.get(key, (0, Decimal(0)))
        if a != b:
            out[key] = (a[0] - b[0], a[1] - b[1])
    return out


# A few thousand orders across every lifecycle path (issue 6), each event duplicated or shuffled.
ORDERS_PER_PATH = 250


async def test_totals_match_final_states_after_shuffled_duplicated_lifecycle_events(
    start_consumer, publisher, db, settings, api
):
    rng = random.Random(2026)
    currency = _currency()
    product = unique_name("prod")
    customers = [unique_name("cust") for _ in range(5)]
    orders = [
        lifecycle(
            path,
            customer_id=rng.choice(customers),
            product_id=product,
            currency=currency,
            amount=f"{rng.randint(1, 500)}.{rng.randint(0, 99):02d}",
            quantity=rng.randint(1, 4),
        )
        for path in [p for p in PATHS for _ in range(ORDERS_PER_PATH)]
    ]
    events = shuffled_with_duplicates(orders, rng)
    before = await _figures(db, currency, product)
    summary_before = await _summary_of(api, currency)
    consumers = [await start_consumer(batch_size=50), await start_consumer(batch_size=17)]
    for at in range(0, len(events), 97):
        await publisher.publish(events[at : at + 97])

    async def all_final() -> bool:
        state = await _state(db, orders)
        return all(state.get(str(o.order_id), ("", 0))[1] == len(o.events) for o in orders)

    await wait_until(all_final, timeout=60, interval=0.25, message="every order in its last state")
    state = await _state(db, orders)
    assert {o.final_state for o in orders} <= {s for s, _ in state.values()}
    assert all(state[str(o.order_id)][0] == o.final_state for o in orders)

    booked = [o for o in orders if o.final_state in BOOKED]
    confirmed = [o for o in orders if o.final_state == "confirmed"]
    booked_revenue = sum((o.amount for o in booked), Decimal(0))
    recognised_revenue = sum((o.amount for o in confirmed), Decimal(0))
    per_status = {
        s: (
            sum(1 for o in orders if o.final_state == s),
            sum((o.amount for o in orders if o.final_state == s), Decimal(0)),
        )
        for s in {o.final_state for o in orders}
    }

    expected = {
        "currency": {currency: (len(booked), booked_revenue)},
        "status": per_status,
        "product": {product: (len(booked), booked_revenue)},
        "recognised": {"*": (len(confirmed), recognised_revenue)},
        "booked_hourly": {"*": (len(booked), booked_revenue)},
    }

    async def figures_delta() -> dict:
        after = await _figures(db, currency, product)
        return {k: _minus(after[k], before[k]) for k in after}

    assert await figures_delta() == expected

    summary_expected = {
        "total_orders": len(booked),
        "total_revenue": booked_revenue,
        "recognised_orders": len(confirmed),
        "recognised_revenue": recognised_revenue,
        "cancelled_orders": per_status["cancelled"][0],
        "rejected_orders": per_status["rejected"][0],
        "payment_failed_orders": per_status["payment_failed"][0],
    }

    async def summary_caught_up() -> bool:
        now = await _summary_of(api, currency)
        return {k: now[k] - summary_before[k] for k in summary_expected} == summary_expected

    await wait_until(summary_caught_up, timeout=10, message="the summary shows the final states")

    audit = (
        await api.post("/analytics/audit", json={"order_ids": [str(o.order_id) for o in orders]})
    ).json()
    assert audit["missing"] == []
    assert {a["order_id"]: a["status"] for a in audit["orders"]} == {
        str(o.order_id): o.final_state for o in orders
    }
    # Some creations arrived after a newer state of their order and changed nothing.
    assert sum(consumed(c, "superseded", "OrderCreated") for c in consumers) > 0

    differences = await rebuild(settings)
    assert not [d for d in differences if currency in d.key or product in d.key]
    assert await figures_delta() == expected


async def _figures(db, currency: str, product: str) -> dict[str, dict]:
    recognised = await _rows(db, "revenue_recognised_hourly", "bucket_start", currency)
    hourly = await _rows(db, "revenue_hourly", "bucket_start", currency)
    return {
        "currency": await _rows(db, "currency_totals", "currency", currency),
        "status": await _rows(db, "status_totals", "status", currency),
        "product": {
            k: v
            for k, v in (await _rows(db, "product_totals", "product_id", currency)).items()
            if k == product
        },
        "recognised": {"*": _total(recognised)},
        "booked_hourly": {"*": _total(hourly)},
    }


def _total(rows: dict[str, tuple[int, Decimal]]) -> tuple[int, Decimal]:
    return (sum(n for n, _ in rows.values()), sum((r for _, r in rows.values()), Decimal(0)))


async def _summary_of(api, currency: str) -> dict[str, Any]:
    body = (await api.get("/analytics/summary")).json()
    mine = next((c for c in body["by_currency"] if c["currency"] == currency), None)
    if mine is None:
        return {
            k: Decimal(0) if "revenue" in k else 0
            for k in (
                "total_orders",
                "total_revenue",
                "recognised_orders",
                "recognised_revenue",
                "cancelled_orders",
                "rejected_orders",
                "payment_failed_orders",
            )
        }
    return {
        k: Decimal(v) if "revenue" in k else v
        for k, v in mine.items()
        if k not in ("currency", "orders_by_status", "average_order_value")
    }


async def test_each_event_is_counted_once_when_the_whole_lifecycle_is_redelivered(
    start_consumer, publisher, db
):
    currency = _currency()
    order = lifecycle(
        "cancelled_paid",
        customer_id=unique_name("cust"),
        product_id=unique_name("prod"),
        currency=currency,
        amount="40.00",
    )
    before = await _figures(db, currency, order.product_id)
    consumer = await start_consumer()
    await publisher.publish(list(order.events))

    async def cancelled() -> bool:
        return (await _state(db, [order])).get(str(order.order_id)) == ("cancelled", 3)

    await wait_until(cancelled, timeout=20, message="the order cancelled")
    await publisher.publish(list(reversed(order.events)))

    async def settled() -> bool:
        outcomes = [
            consumed(consumer, o, t)
            # Two workers may commit the cancellation first: then the older events supersede.
            for o in ("applied", "duplicate", "superseded")
            for t in ("OrderCreated", "OrderPaid", "OrderCancelled")
        ]
        return sum(outcomes) == 6

    await wait_until(settled, timeout=20, message="the redelivered events acked as duplicates")
    after = await _figures(db, currency, order.product_id)
    assert _minus(after["currency"], before["currency"]) == {}
    assert _minus(after["status"], before["status"]) == {"cancelled": (1, Decimal("40.00"))}
