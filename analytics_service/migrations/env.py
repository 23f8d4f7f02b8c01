"""Alembic environment for analytics_db; run through `python -m analytics_service migrate`."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from analytics_service.adapters.tables import metadata

# Its own version table: the history never mixes with another service's, even on one server.
VERSION_TABLE = "alembic_version_analytics_service"


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = context.config.attributes["database_url"]
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(_main())
