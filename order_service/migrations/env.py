"""Alembic environment for order_db; run through `python -m order_service migrate`."""

from common.migrations import run_migrations_online
from order_service.adapters.tables import metadata

run_migrations_online(metadata, version_table="alembic_version_order_service")
