"""Alembic environment for analytics_db; run through `python -m analytics_service migrate`."""

from analytics_service.adapters.tables import metadata
from common.migrations import run_migrations_online

run_migrations_online(metadata, version_table="alembic_version_analytics_service")
