"""outbox poison rows: per-row retry time and a parking mark; attempts no longer overflow

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = DATETIME(fsp=6)


def upgrade() -> None:
    op.alter_column(
        "outbox",
        "attempts",
        existing_type=sa.SmallInteger,
        type_=sa.Integer,
        existing_nullable=False,
        existing_server_default="0",
    )
    op.add_column("outbox", sa.Column("next_attempt_at", TS, nullable=True))
    op.add_column("outbox", sa.Column("parked_at", TS, nullable=True))
    # Parked rows stay pending (published_at NULL) but out of the claim's index range.
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.create_index("ix_outbox_pending", "outbox", ["exchange", "published_at", "parked_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.create_index("ix_outbox_pending", "outbox", ["exchange", "published_at", "id"])
    op.drop_column("outbox", "parked_at")
    op.drop_column("outbox", "next_attempt_at")
    op.alter_column(
        "outbox",
        "attempts",
        existing_type=sa.Integer,
        type_=sa.SmallInteger,
        existing_nullable=False,
        existing_server_default="0",
    )
