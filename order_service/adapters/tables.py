"""order_db tables (SQLAlchemy Core); Alembic migrations create the same schema."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.mysql import DATETIME

__all__ = [
    "UNPUBLISHED",
    "idempotency_keys",
    "metadata",
    "order_transitions",
    "orders",
    "outbox",
    "payments",
    "stock",
]

metadata = MetaData()
# Microsecond precision: the listing cursor and the outbox age depend on it.
TS = DATETIME(fsp=6)
# The year-9999 mark of an outbox row not sent yet: past any retention, so never pruned.
UNPUBLISHED = datetime(9999, 12, 31, 23, 59, 59)

orders = Table(
    "orders",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("product_id", String(64), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("total_amount", Numeric(14, 4, asdecimal=True), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(32), nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("scheduled_time", TS, nullable=True),
    Index("ix_orders_customer_created", "customer_id", "created_at", "id"),
    Index("ix_orders_status_created", "status", "created_at", "id"),
    Index("ix_orders_created", "created_at", "id"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("aggregate_id", String(36), nullable=False),
    Column("event_type", String(64), nullable=False),
    # Each relay claims only its exchange's rows: several systems (or test runs) can share one
    # database without publishing each other's events to the wrong exchange.
    Column("exchange", String(255), nullable=False, server_default="orders"),
    Column("routing_key", String(128), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("occurred_at", TS, nullable=False),
    # When the broker confirmed it; UNPUBLISHED until then. Not NULL, so that marking a row
    # sent rewrites eight bytes in place: InnoDB stores a NULL in no bytes, so filling it grew
    # each ~1 KB row, which it could not rewrite in place (~5 KB of redo per mark, 0.2 KB now;
    # docs/benchmark.md, "Outbox marks in place").
    Column(
        "published_at",
        TS,
        nullable=False,
        server_default=UNPUBLISHED.isoformat(" "),
    ),
    # Failures of the message itself (unroutable, nacked); a broker outage spends none.
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", String(500), nullable=True),
    # A failed row waits until then before the next recovery pass claims it again.
    Column("next_attempt_at", TS, nullable=True),
    # Set aside after too many attempts: kept, never claimed, replayed by an operator
    # (python -m order_service outbox list|replay|purge).
    Column("parked_at", TS, nullable=True),
    Index("ix_outbox_pending", "exchange", "published_at", "parked_at", "id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("idem_key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", SmallInteger, nullable=False),
    Column("response_body", LargeBinary, nullable=False),
    Column("resource_id", String(36), nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=False),
    Index("ix_idempotency_expires", "expires_at"),
)

# The timeline: one row per state an order entered, written with the transition's outbox row.
order_transitions = Table(
    "order_transitions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("order_id", String(36), nullable=False),
    Column("version", Integer, nullable=False),
    Column("from_status", String(32), nullable=True),
    Column("to_status", String(32), nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("reason", String(200), nullable=True),
    Column("occurred_at", TS, nullable=False),
    UniqueConstraint("order_id", "version", name="uq_order_transitions_version"),
)

# Inventory owned by the order service; a product without a row is not stock-managed.
stock = Table(
    "stock",
    metadata,
    Column("product_id", String(64), primary_key=True),
    Column("available", BigInteger, nullable=False),
    Column("reserved", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", TS, nullable=False),
)

# What the payment gateway answered, keyed by order: a retry reuses it instead of charging again.
payments = Table(
    "payments",
    metadata,
    Column("order_id", String(36), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("payment_id", String(64), nullable=True),
    Column("amount", Numeric(14, 4, asdecimal=True), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("decline_reason", String(200), nullable=True),
    Column("refund_id", String(64), nullable=True),
    Column("charged_at", TS, nullable=False),
    Column("refunded_at", TS, nullable=True),
)
