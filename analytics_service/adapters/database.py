"""The analytics_db engine and the translation of driver errors into the ports' errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from analytics_service.ports import StoreConflictError, StoreUnavailableError

__all__ = ["aware_utc", "build_engine", "naive_utc", "translate_db_error", "translated"]

_LOCK_WAIT_TIMEOUT = 1205
_DEADLOCK = 1213


def build_engine(url: str, *, pool_size: int, connect_timeout: int) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=connect_timeout,
        pool_recycle=1800,
        # After a database restart every pooled connection is dead; checking on checkout turns
        # that into one reconnect instead of one failed batch per stale connection.
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": connect_timeout,
            "init_command": "SET SESSION innodb_lock_wait_timeout=10, time_zone='+00:00'",
        },
    )


def naive_utc(value: datetime) -> datetime:
    """MySQL DATETIME has no zone; we store UTC."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def aware_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _errno(exc: DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def translate_db_error(exc: BaseException) -> Exception | None:
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
