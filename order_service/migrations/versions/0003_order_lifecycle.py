"""order lifecycle: scheduled time, transitions (timeline), stock, payments

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = DATETIME(fsp=6)
# The demo catalogue (docs/lifecycle.md): the load tool's products, plenty of each, and one
# product that is always sold out so the rejection path can be seen by hand.
DEMO_PRODUCTS = [f"prod-{n}" for n in range(1, 101)]
DEMO_STOCK = 1_000_000_000
SOLD_OUT = "prod-sold-out"


def upgrade() -> None:
    op.add_column("orders", sa.Column("scheduled_time", TS, nullable=True))
    op.create_table(
        "order_transitions",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("occurred_at", TS, nullable=False),
        # One row per version: a lost update would show as a duplicate here.
        sa.UniqueConstraint("order_id", "version", name="uq_order_transitions_version"),
        mysql_engine="InnoDB",
    )
    stock = op.create_table(
        "stock",
        sa.Column("product_id", sa.String(64), primary_key=True),
        sa.Column("available", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_at", TS, nullable=False),
        mysql_engine="InnoDB",
    )
    seeded_at = datetime(2026, 11, 22)
    op.bulk_insert(
        stock,
        [
            {"product_id": p, "available": DEMO_STOCK, "reserved": 0, "updated_at": seeded_at}
            for p in DEMO_PRODUCTS
        ]
        + [{"product_id": SOLD_OUT, "available": 0, "reserved": 0, "updated_at": seeded_at}],
        multiinsert=True,
    )
    op.create_table(
        "payments",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=True),
        sa.Column("amount", sa.Numeric(14, 4), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("decline_reason", sa.String(200), nullable=True),
        sa.Column("refund_id", sa.String(64), nullable=True),
        sa.Column("charged_at", TS, nullable=False),
        sa.Column("refunded_at", TS, nullable=True),
        mysql_engine="InnoDB",
    )


def downgrade() -> None:
    op.drop_table("payments")
    op.drop_table("stock")
    op.drop_table("order_transitions")
    op.drop_column("orders", "scheduled_time")
