"""analytics_db tables (SQLAlchemy Core); the Alembic migrations create the same schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
)
from sqlalchemy.dialects.mysql import DATETIME

from analytics_service.aggregation import AggregateKind

__all__ = [
    "AGGREGATE_TABLES",
    "currency_totals",
    "customer_totals",
    "inbox",
    "metadata",
    "order_facts",
    "product_totals",
    "revenue_hourly",
    "revenue_recognised_hourly",
    "status_totals",
]

metadata = MetaData()
# Microseconds: the load tool measures end-to-end latency from occurred_at and applied_at.
TS = DATETIME(fsp=6)
# Sums of up to 10^14 per order over billions of orders, exact to the fact's 4 places.
MONEY_SUM = Numeric(28, 4, asdecimal=True)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(64), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    # Which transaction inserted the row: tells a batch which of its events were new.
    Column("batch_token", String(32), nullable=False),
    Column("received_at", TS, nullable=False),
    Index("ix_inbox_received", "received_at"),
)

order_facts = Table(
    "order_facts",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("event_id", String(36), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("product_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("total_amount", Numeric(18, 4, asdecimal=True), nullable=False),
    # The amount's own decimal places, so "12.50" reads back as "12.50", not "12.5000".
    Column("amount_scale", SmallInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_at", TS, nullable=False),
    # occurred_at / applied_at: of the first event applied for the order (the audit's latency).
    Column("occurred_at", TS, nullable=False),
    Column("applied_at", TS, nullable=False),
    # The order's latest known state: the highest order_version seen wins (aggregation.py).
    Column("order_version", Integer, nullable=False, server_default="1"),
    Column("status_changed_at", TS, nullable=False),
    Index("ix_order_facts_created", "created_at"),
)


def _totals_columns() -> list[Column[object]]:
    return [
        Column("order_count", BigInteger, nullable=False),
        Column("revenue", MONEY_SUM, nullable=False),
        Column("quantity", BigInteger, nullable=False),
    ]


currency_totals = Table(
    "currency_totals",
    metadata,
    Column("currency", String(3), primary_key=True),
    *_totals_columns(),
    Column("updated_at", TS, nullable=False),
)

revenue_hourly = Table(
    "revenue_hourly",
    metadata,
    Column("bucket_start", DATETIME(fsp=0), primary_key=True),
    Column("currency", String(3), primary_key=True),
    *_totals_columns(),
)

# Recognised (confirmed) revenue per hour of confirmation.
revenue_recognised_hourly = Table(
    "revenue_recognised_hourly",
    metadata,
    Column("bucket_start", DATETIME(fsp=0), primary_key=True),
    Column("currency", String(3), primary_key=True),
    *_totals_columns(),
)

# Orders currently in each lifecycle state, per currency.
status_totals = Table(
    "status_totals",
    metadata,
    Column("currency", String(3), primary_key=True),
    Column("status", String(32), primary_key=True),
    *_totals_columns(),
)

product_totals = Table(
    "product_totals",
    metadata,
    Column("product_id", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    *_totals_columns(),
)

customer_totals = Table(
    "customer_totals",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("currency", String(3), primary_key=True),
    *_totals_columns(),
)

# Top lists read "ORDER BY revenue DESC, id LIMIT n" straight off these indexes.
Index("ix_product_rank", product_totals.c.revenue.desc(), product_totals.c.product_id)
Index(
    "ix_product_currency_rank",
    product_totals.c.currency,
    product_totals.c.revenue.desc(),
    product_totals.c.product_id,
)
Index("ix_customer_rank", customer_totals.c.revenue.desc(), customer_totals.c.customer_id)
Index(
    "ix_customer_currency_rank",
    customer_totals.c.currency,
    customer_totals.c.revenue.desc(),
    customer_totals.c.customer_id,
)

# Aggregate kind (aggregation.Aggregates) -> table and its key columns, in key order.
AGGREGATE_TABLES: dict[AggregateKind, tuple[Table, tuple[str, ...]]] = {
    "currency": (currency_totals, ("currency",)),
    "hourly": (revenue_hourly, ("bucket_start", "currency")),
    "product": (product_totals, ("product_id", "currency")),
    "customer": (customer_totals, ("customer_id", "currency")),
    "recognised": (revenue_recognised_hourly, ("bucket_start", "currency")),
    "status": (status_totals, ("currency", "status")),
}
