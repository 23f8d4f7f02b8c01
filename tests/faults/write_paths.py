"""Both write paths against what the order service committed: keyed requests settled by their
Idempotency-Key, unkeyed ones found by listing the run's customers and matched to their request
by product (unique per request)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from loadtool.generator import GeneratedOrder
from loadtool.runner import AcceptedOrder

__all__ = [
    "WritePaths",
    "accepted_order",
    "list_committed",
    "match_write_paths",
    "settle_keyed_orders",
]


async def settle_keyed_orders(
    url: str, orders: list[GeneratedOrder], timeout: float = 60.0, concurrency: int = 16
) -> tuple[list[AcceptedOrder], int]:
    """Each keyed order sent again with its own Idempotency-Key until it answers 201.

    Returns the exact set of keyed orders that exist, and how many of them were created by
    this pass (their first request failed before committing).
    """
    orders = [o for o in orders if o.idempotency_key is not None]
    semaphore = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + timeout
    created_now = 0

    async def settle(client: httpx.AsyncClient, order: GeneratedOrder) -> AcceptedOrder:
        nonlocal created_now
        assert order.idempotency_key is not None
        last = ""
        while time.monotonic() < deadline:
            async with semaphore:
                try:
                    response = await client.post(
                        "/orders",
                        content=order.body,
                        headers={
                            "content-type": "application/json",
                            "Idempotency-Key": order.idempotency_key,
                        },
                    )
                except httpx.HTTPError as exc:
                    last = repr(exc)
                    response = None
            if response is not None and response.status_code == 201:
                if response.headers.get("idempotent-replayed") != "true":
                    created_now += 1
                return accepted_order(response.json()["id"], order)
            if response is not None:
                last = f"{response.status_code} {response.text[:200]}"
                assert response.status_code in (409, 503), last  # only "try again" answers
            await asyncio.sleep(0.2)
        raise AssertionError(f"order {order.idempotency_key} not settled in time: {last}")

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        settled = await asyncio.gather(*(settle(client, o) for o in orders))
    return list(settled), created_now


def accepted_order(order_id: str, order: GeneratedOrder) -> AcceptedOrder:
    return AcceptedOrder(
        order_id,
        order.total_amount,
        order.currency,
        order.customer_id,
        order.product_id,
        order.quantity,
    )


async def list_committed(url: str, customers: Sequence[str]) -> list[dict[str, Any]]:
    """Every order the order service holds for these customers (its own answer, paged)."""
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for customer in customers:
            cursor: str | None = None
            while True:
                params = {"customer_id": customer, "limit": "100"}
                if cursor:
                    params["cursor"] = cursor
                response = await client.get("/orders", params=params)
                assert response.status_code == 200, response.text[:300]
                page = response.json()
                found.extend(page["items"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
    return found


@dataclass
class WritePaths:
    """Committed orders matched to the requests of both write paths."""

    orders: list[AcceptedOrder] = field(default_factory=list)  # every committed order, once
    unkeyed_sent: int = 0
    unkeyed_committed: int = 0
    unkeyed_committed_without_201: int = 0
    lost: list[str] = field(default_factory=list)  # answered 201 (or settled), not there
    doubled: list[str] = field(default_factory=list)  # one request, several orders
    phantom: list[str] = field(default_factory=list)  # an order no request asked for
    differ: list[str] = field(default_factory=list)  # an order unlike its request


def match_write_paths(
    generated: Sequence[GeneratedOrder],
    answered: Sequence[AcceptedOrder],
    settled: Sequence[AcceptedOrder],
    committed: Sequence[dict[str, Any]],
) -> WritePaths:
    """Pure: each request (its product is unique) against what the service committed."""
    out = WritePaths()
    by_product: dict[str, list[dict[str, Any]]] = {}
    for row in committed:
        by_product.setdefault(str(row["product_id"]), []).append(row)
    confirmed = {o.order_id for o in answered} | {o.order_id for o in settled}
    requested = set()
    for order in generated:
        assert order.product_id is not None
        requested.add(order.product_id)
        rows = by_product.get(order.product_id, [])
        if order.idempotency_key is None:
            out.unkeyed_sent += 1
            out.unkeyed_committed += min(len(rows), 1)
        if len(rows) > 1:
            out.doubled.append(f"{order.product_id}: {[r['id'] for r in rows]}")
        for row in rows:
            if row["id"] not in confirmed and order.idempotency_key is None:
                out.unkeyed_committed_without_201 += 1
            want = (str(order.total_amount), order.currency, order.customer_id, order.quantity)
            have = (
                str(Decimal(str(row["total_amount"])).quantize(order.total_amount)),
                row["currency"],
                row["customer_id"],
                row["quantity"],
            )
            if want != have:
                out.differ.append(f"{row['id']}: {have} != {want}")
            out.orders.append(accepted_order(str(row["id"]), order))
    ids = {str(r["id"]) for r in committed}
    out.lost = sorted(oid for oid in confirmed if oid not in ids)
    out.phantom = sorted(str(r["id"]) for r in committed if str(r["product_id"]) not in requested)
    return out
