"""inbox, order facts and the aggregates kept from them

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = DATETIME(fsp=6)
MONEY_SUM = sa.Numeric(28, 4)


def _totals() -> list[sa.Column[object]]:
    return [
        sa.Column("order_count", sa.BigInteger, nullable=False),
        sa.Column("revenue", MONEY_SUM, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("batch_token", sa.String(32), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_inbox_received", "inbox", ["received_at"])
    op.create_table(
        "order_facts",
        sa.Column("order_id", sa.String(36), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("product_id", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("total_amount", sa.Numeric(18, 4), nullable=False),
        sa.Column("amount_scale", sa.SmallInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("applied_at", TS, nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_index("ix_order_facts_created", "order_facts", ["created_at"])
    op.create_table(
        "currency_totals",
        sa.Column("currency", sa.String(3), primary_key=True),
        *_totals(),
        sa.Column("updated_at", TS, nullable=False),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "revenue_hourly",
        sa.Column("bucket_start", DATETIME(fsp=0), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        *_totals(),
        mysql_engine="InnoDB",
    )
    for kind in ("product", "customer"):
        table = f"{kind}_totals"
        op.create_table(
            table,
            sa.Column(f"{kind}_id", sa.String(64), primary_key=True),
            sa.Column("currency", sa.String(3), primary_key=True),
            *_totals(),
            mysql_engine="InnoDB",
        )
        op.create_index(f"ix_{kind}_rank", table, [sa.text("revenue DESC"), f"{kind}_id"])
        op.create_index(
            f"ix_{kind}_currency_rank", table, ["currency", sa.text("revenue DESC"), f"{kind}_id"]
        )


def downgrade() -> None:
    for table in (
        "customer_totals",
        "product_totals",
        "revenue_hourly",
        "currency_totals",
        "order_facts",
        "inbox",
    ):
        op.drop_table(table)
