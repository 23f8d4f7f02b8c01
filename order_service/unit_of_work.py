"""The MySQL unit of work: one connection, one explicit transaction, DB errors translated."""

from __future__ import annotations

import contextlib
from types import TracebackType

import pymysql
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.messaging.outcomes import DependencyUnavailableError
from order_service.adapters.repository import (
    MySqlIdempotencyRepository,
    MySqlOrderRepository,
    MySqlOutboxRepository,
    MySqlPaymentRepository,
    MySqlStockRepository,
)
from order_service.services import DuplicateKeyError, LockTimeoutError

__all__ = ["DatabaseUnavailableError", "SqlUnitOfWork", "translate_db_error"]

_DUPLICATE_KEY = 1062
_LOCK_WAIT_TIMEOUT = 1205
_DEADLOCK = 1213


class DatabaseUnavailableError(DependencyUnavailableError):
    """MySQL cannot be reached or did not answer in time (a consumer defers, never retries)."""


def _errno(exc: DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def translate_db_error(exc: BaseException) -> BaseException | None:
    if isinstance(exc, pymysql.err.MySQLError) and not isinstance(exc, DBAPIError):
        return _translate_driver_error(exc)
    if isinstance(exc, IntegrityError) and _errno(exc) == _DUPLICATE_KEY:
        return DuplicateKeyError(str(exc.orig))
    if isinstance(exc, OperationalError) and _errno(exc) in (_LOCK_WAIT_TIMEOUT, _DEADLOCK):
        return LockTimeoutError(str(exc.orig))
    if isinstance(exc, (OperationalError, PoolTimeoutError, ConnectionError, TimeoutError)):
        return DatabaseUnavailableError(str(exc))
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailableError(str(exc))
    return None


def _translate_driver_error(exc: pymysql.err.MySQLError) -> BaseException | None:
    """Errors of the raw driver (multi-statement packets), mapped like SQLAlchemy's."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if isinstance(exc, pymysql.err.IntegrityError) and code == _DUPLICATE_KEY:
        return DuplicateKeyError(str(exc))
    if code in (_LOCK_WAIT_TIMEOUT, _DEADLOCK):
        return LockTimeoutError(str(exc))
    if isinstance(exc, (pymysql.err.OperationalError, pymysql.err.InterfaceError)):
        return DatabaseUnavailableError(str(exc))
    return None


class SqlUnitOfWork:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._committed = False

    async def __aenter__(self) -> SqlUnitOfWork:
        try:
            self._conn = await self._engine.connect()
            await self._conn.begin()
        except Exception as exc:
            if self._conn is not None:
                await self._conn.close()
            mapped = translate_db_error(exc)
            if mapped is not None:
                raise mapped from exc
            raise
        self.orders = MySqlOrderRepository(self._conn)
        self.outbox = MySqlOutboxRepository(self._conn)
        self.idempotency = MySqlIdempotencyRepository(self._conn)
        self.stock = MySqlStockRepository(self._conn)
        self.payments = MySqlPaymentRepository(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None
        try:
            if not self._committed:
                # The connection may be gone already; closing discards it.
                with contextlib.suppress(Exception):
                    await self._conn.rollback()
        finally:
            with contextlib.suppress(Exception):
                await self._conn.close()
        if exc is not None:
            mapped = translate_db_error(exc)
            if mapped is not None:
                raise mapped from exc

    async def commit(self) -> None:
        assert self._conn is not None
        await self._conn.commit()
        self._committed = True

    async def rollback(self) -> None:
        assert self._conn is not None
        await self._conn.rollback()
