"""What the analytics API answers with, built from the store's rows: the read models the
queries return (analytics_service/services.py) and the API encodes as they are.

Amounts are decimal strings: exact, never floats.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

import msgspec

from analytics_service.aggregation import ORDER_STATES, BucketPlan, money, summarize
from analytics_service.ports import AuditedOrder, RankedEntry, RevenueRow, SummaryRows

__all__ = [
    "AuditResponse",
    "RevenueResponse",
    "SummaryResponse",
    "TopCustomersResponse",
    "TopProductsResponse",
    "audit_response",
    "revenue_response",
    "summary_response",
    "top_customers_response",
    "top_products_response",
]

Amount = Annotated[str, msgspec.Meta(pattern=r"^-?\d+(\.\d+)?$", examples=["12.50"])]


class CurrencySummary(msgspec.Struct, kw_only=True):
    currency: str
    total_orders: int
    total_revenue: Amount
    average_order_value: Amount
    recognised_orders: int
    recognised_revenue: Amount
    cancelled_orders: int
    rejected_orders: int
    payment_failed_orders: int
    orders_by_status: dict[str, int]


class SummaryResponse(msgspec.Struct, kw_only=True):
    """Totals since the beginning. Money is per currency: amounts in different currencies
    are never added together.

    ``total_orders`` / ``total_revenue`` are booked: orders now created, paid or confirmed
    (scheduled orders count once created; cancelled, rejected and payment-failed ones are
    taken back out). ``recognised_*`` are confirmed orders. ``orders_by_status`` counts every
    order analytics knows by its latest state."""

    total_orders: int
    total_revenue: dict[str, Amount]
    average_order_value: dict[str, Amount]
    by_currency: list[CurrencySummary]
    last_updated: datetime | None
    recognised_orders: int
    recognised_revenue: dict[str, Amount]
    cancelled_orders: int
    rejected_orders: int
    payment_failed_orders: int
    orders_by_status: dict[str, int]


class RevenueBucket(msgspec.Struct, kw_only=True):
    """``order_count`` / ``revenue``: booked, by the hour the order was created;
    ``recognised_*``: confirmed, by the hour of confirmation."""

    start: datetime
    order_count: int
    revenue: dict[str, Amount]
    recognised_count: int = 0
    recognised_revenue: dict[str, Amount] = msgspec.field(default_factory=dict)


class RevenueResponse(msgspec.Struct, kw_only=True):
    granularity: str
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    currency: str | None
    buckets: list[RevenueBucket]


class RankedProduct(msgspec.Struct, kw_only=True):
    rank: int
    product_id: str
    currency: str
    revenue: Amount
    order_count: int
    quantity: int


class RankedCustomer(msgspec.Struct, kw_only=True):
    rank: int
    customer_id: str
    currency: str
    revenue: Amount
    order_count: int
    quantity: int


class TopProductsResponse(msgspec.Struct, kw_only=True):
    """Ranked by revenue, highest first. Without ``currency`` the ranking compares nominal
    amounts across currencies; pass one for a like-for-like ranking."""

    limit: int
    currency: str | None
    items: list[RankedProduct]


class TopCustomersResponse(msgspec.Struct, kw_only=True):
    """Ranked by revenue, highest first (see TopProductsResponse on currencies)."""

    limit: int
    currency: str | None
    items: list[RankedCustomer]


class AuditedOrderItem(msgspec.Struct, kw_only=True):
    order_id: uuid.UUID
    total_amount: Amount
    currency: str
    occurred_at: datetime
    applied_at: datetime
    status: str


class AuditResponse(msgspec.Struct, kw_only=True):
    orders: list[AuditedOrderItem]
    missing: list[uuid.UUID]


def summary_response(rows: SummaryRows) -> SummaryResponse:
    per_currency = summarize(rows.totals, rows.by_status)
    booked = [c for c in per_currency if c.total_orders > 0]
    recognised = [c for c in per_currency if c.recognised_orders > 0]
    by_status: dict[str, int] = {}
    for c in per_currency:
        for status, n in c.orders_by_status.items():
            by_status[status] = by_status.get(status, 0) + n
    return SummaryResponse(
        total_orders=sum(c.total_orders for c in booked),
        total_revenue={c.currency: money(c.total_revenue) for c in booked},
        average_order_value={c.currency: money(c.average_order_value) for c in booked},
        by_currency=[
            CurrencySummary(
                currency=c.currency,
                total_orders=c.total_orders,
                total_revenue=money(c.total_revenue),
                average_order_value=money(c.average_order_value),
                recognised_orders=c.recognised_orders,
                recognised_revenue=money(c.recognised_revenue),
                cancelled_orders=c.orders_by_status.get("cancelled", 0),
                rejected_orders=c.orders_by_status.get("rejected", 0),
                payment_failed_orders=c.orders_by_status.get("payment_failed", 0),
                orders_by_status=c.orders_by_status,
            )
            for c in per_currency
        ],
        last_updated=rows.last_updated,
        recognised_orders=sum(c.recognised_orders for c in recognised),
        recognised_revenue={c.currency: money(c.recognised_revenue) for c in recognised},
        cancelled_orders=by_status.get("cancelled", 0),
        rejected_orders=by_status.get("rejected", 0),
        payment_failed_orders=by_status.get("payment_failed", 0),
        orders_by_status={s: by_status[s] for s in ORDER_STATES if s in by_status},
    )


def revenue_response(
    plan: BucketPlan, currency: str | None, rows: Sequence[RevenueRow]
) -> RevenueResponse:
    by_start: dict[datetime, RevenueBucket] = {
        start: RevenueBucket(start=start, order_count=0, revenue={}) for start in plan.starts()
    }
    for row in rows:
        bucket = by_start.get(row.bucket_start)
        if bucket is None:  # pragma: no cover - the query only returns rows inside the plan
            continue
        if row.order_count or row.revenue:
            bucket.order_count += row.order_count
            bucket.revenue[row.currency] = money(row.revenue)
        if row.recognised_count or row.recognised_revenue:
            bucket.recognised_count += row.recognised_count
            bucket.recognised_revenue[row.currency] = money(row.recognised_revenue)
    return RevenueResponse(
        granularity=plan.granularity,
        start=plan.start,
        end=plan.end,
        currency=currency,
        buckets=list(by_start.values()),
    )


def _ranked(entries: Sequence[RankedEntry], id_field: str) -> list[dict[str, object]]:
    return [
        {
            "rank": n,
            id_field: e.id,
            "currency": e.currency,
            "revenue": money(e.revenue),
            "order_count": e.order_count,
            "quantity": e.quantity,
        }
        for n, e in enumerate(entries, start=1)
    ]


def top_products_response(
    limit: int, currency: str | None, entries: Sequence[RankedEntry]
) -> TopProductsResponse:
    return TopProductsResponse(
        limit=limit,
        currency=currency,
        items=msgspec.convert(_ranked(entries, "product_id"), list[RankedProduct]),
    )


def top_customers_response(
    limit: int, currency: str | None, entries: Sequence[RankedEntry]
) -> TopCustomersResponse:
    return TopCustomersResponse(
        limit=limit,
        currency=currency,
        items=msgspec.convert(_ranked(entries, "customer_id"), list[RankedCustomer]),
    )


def audit_response(requested: Sequence[uuid.UUID], found: Sequence[AuditedOrder]) -> AuditResponse:
    present = {o.order_id for o in found}
    return AuditResponse(
        orders=[
            AuditedOrderItem(
                order_id=o.order_id,
                total_amount=str(o.total_amount),
                currency=o.currency,
                occurred_at=o.occurred_at,
                applied_at=o.applied_at,
                status=o.status,
            )
            for o in sorted(found, key=lambda o: str(o.order_id))
        ],
        missing=list(dict.fromkeys(i for i in requested if i not in present)),
    )
