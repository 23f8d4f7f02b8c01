"""The analytics_db engine and the translation of driver errors into the ports' errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from analytics_service.ports import StoreConflictError, StoreUnavailableError
from common.mysql import DbErrorKind, classify_db_error
from common.mysql import build_engine as build_mysql_engine
from common.mysql import driver_connection as raw_driver_connection

__all__ = [
    "build_engine",
    "driver_connection",
    "translate_db_error",
    "translated",
]


def build_engine(
    url: str, *, pool_size: int, connect_timeout: int, check_on_checkout: bool = True
) -> AsyncEngine:
    """``check_on_checkout`` False (the consumer) saves two round trips per transaction: no
    ping when a connection leaves the pool, no rollback when it returns (every consumer
    transaction ends in its own COMMIT or ROLLBACK). Its caller must then handle a stale
    connection itself (MySqlAnalyticsStore.apply in fact_store.py reruns once on a fresh pool)."""
    return build_mysql_engine(
        url,
        pool_size=pool_size,
        connect_timeout=connect_timeout,
        session={"innodb_lock_wait_timeout": 10},
        pre_ping=check_on_checkout,
        reset_on_return=check_on_checkout,
    )


def translate_db_error(exc: BaseException) -> Exception | None:
    kind = classify_db_error(exc)
    if kind is DbErrorKind.CONFLICT:
        return StoreConflictError(str(getattr(exc, "orig", None) or exc))
    if kind is DbErrorKind.UNAVAILABLE:
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
    """common.mysql.driver_connection whose driver errors surface as StoreUnavailableError /
    StoreConflictError like those of ``translated``."""
    try:
        async with raw_driver_connection(engine) as connection:
            yield connection
    except Exception as exc:
        mapped = translate_db_error(exc)
        if mapped is not None:
            raise mapped from exc
        raise
