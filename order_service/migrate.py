"""Applies order_db migrations (Alembic, this service's own history)."""

from __future__ import annotations

from pathlib import Path

from common import migrations

__all__ = ["upgrade_to_head"]


def upgrade_to_head(database_url: str) -> None:
    migrations.upgrade_to_head(Path(__file__).parent / "migrations", database_url)
