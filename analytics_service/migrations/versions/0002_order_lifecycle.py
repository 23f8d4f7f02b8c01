"""order lifecycle: per-order state and version on facts, recognised revenue, orders per state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision = "0002"
down_revision = "0001"
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
    op.add_column(
        "order_facts",
        sa.Column("order_version", sa.Integer, nullable=False, server_default="1"),
    )
    op.add_column("order_facts", sa.Column("status_changed_at", TS, nullable=True))
    # Every fact so far came from an OrderCreated: its state is "created" (the column held the
    # producer's status text) and it entered that state when it was created.
    op.execute("UPDATE order_facts SET status = 'created', status_changed_at = created_at")
    op.alter_column("order_facts", "status_changed_at", existing_type=TS, nullable=False)
    op.create_table(
        "revenue_recognised_hourly",
        sa.Column("bucket_start", DATETIME(fsp=0), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        *_totals(),
        mysql_engine="InnoDB",
    )
    op.create_table(
        "status_totals",
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("status", sa.String(32), primary_key=True),
        *_totals(),
        mysql_engine="InnoDB",
    )
    op.execute(
        "INSERT INTO status_totals (currency, status, order_count, revenue, quantity) "
        "SELECT currency, 'created', COUNT(*), SUM(total_amount), SUM(quantity) "
        "FROM order_facts GROUP BY currency"
    )


def downgrade() -> None:
    op.drop_table("status_totals")
    op.drop_table("revenue_recognised_hourly")
    op.drop_column("order_facts", "status_changed_at")
    op.drop_column("order_facts", "order_version")
