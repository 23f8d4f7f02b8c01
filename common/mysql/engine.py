"""The async SQLAlchemy engine on aiomysql, built one way for every service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["build_engine", "driver_connection"]


def build_engine(
    url: str,
    *,
    pool_size: int,
    connect_timeout: int,
    session: Mapping[str, int | str] | None = None,
    pre_ping: bool = False,
    reset_on_return: bool = False,
    isolation_level: str | None = None,
) -> AsyncEngine:
    """A pool of ``pool_size`` (and as many overflow) connections, each set to UTC and to the
    ``session`` variables when it connects.

    ``pre_ping`` turns a pool of connections left dead by a database restart into one reconnect
    instead of one failure per stale connection, for one round trip per checkout.
    ``reset_on_return`` rolls back on every return, one more round trip that a caller that
    always ends its own transactions does not need.
    """
    variables = {**(session or {}), "time_zone": "+00:00"}
    init_command = "SET SESSION " + ", ".join(
        f"{name}='{value}'" if isinstance(value, str) else f"{name}={value}"
        for name, value in variables.items()
    )
    options: dict[str, Any] = {}
    if isolation_level is not None:
        options["isolation_level"] = isolation_level
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=connect_timeout,
        pool_recycle=1800,
        pool_pre_ping=pre_ping,
        pool_reset_on_return="rollback" if reset_on_return else None,
        connect_args={"connect_timeout": connect_timeout, "init_command": init_command},
        **options,
    )


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[tuple[Any, bool]]:
    """The pooled connection's driver (aiomysql) connection, for multi-statement text that
    commits itself, and whether the server wants ``AS new`` row aliases in upserts. An error
    rolls back, or discards the connection when even that fails."""
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection
        # Set by SQLAlchemy's MySQL dialect from the server version when it first connects.
        alias = bool(getattr(engine.dialect, "_requires_alias_for_on_duplicate_key", False))
        try:
            yield driver, alias
        except BaseException:
            try:
                await driver.rollback()
            except BaseException:
                await conn.invalidate()
            raise
