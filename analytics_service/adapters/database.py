"""The analytics_db engine and the translation of driver errors into the ports' errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pymysql
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from analytics_service.ports import StoreConflictError, StoreUnavailableError

__all__ = [
    "aware_utc",
    "build_engine",
    "driver_connection",
    "naive_utc",
    "translate_db_error",
    "translated",
]

_LOCK_WAIT_TIMEOUT = 1205
_DEADLOCK = 1213


def build_engine(
    url: str, *, pool_size: int, connect_timeout: int, check_on_checkout: bool = True
) -> AsyncEngine:
    """``check_on_checkout`` False (the consumer) saves two round trips per transaction: no
    ping when a connection leaves the pool, no rollback when it returns (every consumer
    transaction ends in its own COMMIT or ROLLBACK). Its caller must then handle a stale
    connection itself (MySqlAnalyticsStore.apply in fact_store.py reruns once on a fresh pool)."""
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=connect_timeout,
        pool_recycle=1800,
        # After a database restart every pooled connection is dead; checking on checkout turns
        # that into one reconnect instead of one failed batch per stale connection.
        pool_pre_ping=check_on_checkout,
        pool_reset_on_return="rollback" if check_on_checkout else None,
        connect_args={
            "connect_timeout": connect_timeout,
            "init_command": "SET SESSION innodb_lock_wait_timeout=10, time_zone='+00:00'",
        },
    )


def naive_utc(value: datetime) -> datetime:
    """MySQL DATETIME has no zone; we store UTC."""
    if value.tzinfo is UTC:  # the common case (facts are normalised to UTC): no conversion
        return value.replace(tzinfo=None)
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def aware_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _errno(exc: DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def translate_db_error(exc: BaseException) -> Exception | None:
    if isinstance(exc, pymysql.err.OperationalError):  # raw driver errors (driver_connection)
        if exc.args and exc.args[0] in (_LOCK_WAIT_TIMEOUT, _DEADLOCK):
            return StoreConflictError(str(exc))
        return StoreUnavailableError(str(exc))
    if isinstance(exc, pymysql.err.InterfaceError):
        return StoreUnavailableError(str(exc))
    if isinstance(exc, OperationalError) and _errno(exc) in (_LOCK_WAIT_TIMEOUT, _DEADLOCK):
        return StoreConflictError(str(exc.orig))
    if isinstance(
        exc, (OperationalError, PoolTimeoutError, ConnectionError, TimeoutError, OSError)
    ):
        return StoreUnavailableError(str(exc))
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return StoreUnavailableError(str(exc))
    return None


@contextlib.asynccontextmanager
async def translated(engine: AsyncEngine, *, begin: bool) -> AsyncIterator[AsyncConnection]:
    """A connection (in a transaction when ``begin``) whose driver errors surface as
    StoreUnavailableError / StoreConflictError."""
    try:
        if begin:
            async with engine.begin() as conn:
                yield conn
        else:
            async with engine.connect() as conn:
                yield conn
    except Exception as exc:
        mapped = translate_db_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise


@contextlib.asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[tuple[Any, bool]]:
    """The pooled connection's driver (aiomysql) connection, for multi-statement text that
    commits itself, and whether the server wants ``AS new`` row aliases in upserts. An error
    rolls back, or discards the connection when even that fails; driver errors surface as
    StoreUnavailableError / StoreConflictError like those of ``translated``."""
    try:
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
    except Exception as exc:
        mapped = translate_db_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise
