"""How facts and aggregate keys are laid out in analytics_db rows, both ways."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from analytics_service.adapters.tables import AGGREGATE_TABLES
from analytics_service.aggregation import AggregateKind, Key, OrderFact
from common.utc import aware_utc, naive_utc

__all__ = [
    "FACT_COLUMNS",
    "StoredFact",
    "fact_of",
    "fact_row",
    "fact_values",
    "key_values",
    "row_key",
]


def _scale(amount: Decimal) -> int:
    exponent = amount.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


_FACT_STATE_COLUMNS = (
    "event_id",
    "customer_id",
    "product_id",
    "quantity",
    "total_amount",
    "amount_scale",
    "currency",
    "status",
    "order_version",
    "status_changed_at",
)
# order_facts in the order StoredFact reads them back and fact_values writes them.
FACT_COLUMNS = (
    "order_id",
    *_FACT_STATE_COLUMNS,
    "created_at",
    "occurred_at",
    "applied_at",
)


class StoredFact(NamedTuple):
    """An order_facts row as the driver returns it, in FACT_COLUMNS order."""

    order_id: str
    event_id: str
    customer_id: str
    product_id: str
    quantity: int
    total_amount: Decimal
    amount_scale: int
    currency: str
    status: str
    order_version: int
    status_changed_at: datetime
    created_at: datetime
    occurred_at: datetime
    applied_at: datetime


def key_values(kind: AggregateKind, key: Key) -> dict[str, Any]:
    _, columns = AGGREGATE_TABLES[kind]
    values = dict(zip(columns, key, strict=True))
    if "bucket_start" in values:
        values["bucket_start"] = naive_utc(values["bucket_start"])
    return values


def row_key(kind: AggregateKind, row: Any) -> Key:
    _, columns = AGGREGATE_TABLES[kind]
    key = tuple(row._mapping[c] for c in columns)
    if columns[0] == "bucket_start":
        key = (aware_utc(key[0]), *key[1:])
    return key


def fact_row(fact: OrderFact, now: datetime, *, inserting: bool) -> dict[str, Any]:
    """Column values of a fact; occurred_at / applied_at are set once, when the order is first
    recorded, so the audit's latency stays that of the first event analytics applied."""
    row: dict[str, Any] = {
        "event_id": str(fact.event_id),
        "customer_id": fact.customer_id,
        "product_id": fact.product_id,
        "quantity": fact.quantity,
        "total_amount": fact.total_amount,
        "amount_scale": _scale(fact.total_amount),
        "currency": fact.currency,
        "status": fact.status,
        "order_version": fact.order_version,
        "status_changed_at": naive_utc(fact.changed_at),
    }
    if inserting:
        row.update(
            order_id=str(fact.order_id),
            created_at=naive_utc(fact.created_at),
            occurred_at=naive_utc(fact.occurred_at),
            applied_at=now,
        )
    return row


def fact_values(fact: OrderFact, now: datetime) -> tuple[Any, ...]:
    """fact_row(inserting=True) in FACT_COLUMNS order, built directly: it runs for every
    order of every batch."""
    return (
        str(fact.order_id),
        str(fact.event_id),
        fact.customer_id,
        fact.product_id,
        fact.quantity,
        fact.total_amount,
        _scale(fact.total_amount),
        fact.currency,
        fact.status,
        fact.order_version,
        naive_utc(fact.changed_at),
        naive_utc(fact.created_at),
        naive_utc(fact.occurred_at),
        now,
    )


def fact_of(r: Any) -> OrderFact:
    """From a SQLAlchemy row or a StoredFact: both name their columns."""
    return OrderFact(
        order_id=uuid.UUID(r.order_id),
        event_id=uuid.UUID(r.event_id),
        customer_id=r.customer_id,
        product_id=r.product_id,
        quantity=int(r.quantity),
        total_amount=Decimal(r.total_amount),
        currency=r.currency,
        status=r.status,
        created_at=aware_utc(r.created_at),
        occurred_at=aware_utc(r.occurred_at),
        order_version=int(r.order_version),
        status_changed_at=aware_utc(r.status_changed_at),
    )
