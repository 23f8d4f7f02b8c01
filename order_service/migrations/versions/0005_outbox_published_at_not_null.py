"""outbox.published_at NOT NULL: a row not sent yet holds the year-9999 mark, not NULL

Marking a row sent then rewrites eight bytes in place. InnoDB stores a NULL in no bytes, so
filling it grew each ~1 KB row, which it could not rewrite in place: ~5 KB of redo per mark
against ~0.2 KB (docs/benchmark.md, "Outbox marks in place").

A previous version still running during the upgrade goes on publishing its new rows and marking
them sent; only its recovery pass finds nothing (it looks for NULL), and the new version's relays
recover every unsent row, old or new. The default changes first, so a row the previous version
inserts between the UPDATE and the ALTER is not left NULL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op
from sqlalchemy.dialects.mysql import DATETIME

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = DATETIME(fsp=6)
# A copy, not an import of order_service.adapters.tables.UNPUBLISHED: a migration stays what it
# was when it ran, whatever the application's schema module says later.
UNPUBLISHED = "9999-12-31 23:59:59"


def upgrade() -> None:
    op.alter_column("outbox", "published_at", existing_type=TS, server_default=UNPUBLISHED)
    op.execute(f"UPDATE outbox SET published_at = '{UNPUBLISHED}' WHERE published_at IS NULL")
    op.alter_column(
        "outbox",
        "published_at",
        existing_type=TS,
        nullable=False,
        server_default=UNPUBLISHED,
    )


def downgrade() -> None:
    op.alter_column(
        "outbox",
        "published_at",
        existing_type=TS,
        nullable=True,
        server_default=None,
    )
    op.execute(f"UPDATE outbox SET published_at = NULL WHERE published_at = '{UNPUBLISHED}'")
