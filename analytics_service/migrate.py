"""Applies analytics_db migrations (Alembic, this service's own history)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

__all__ = ["upgrade_to_head"]


def upgrade_to_head(database_url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")
