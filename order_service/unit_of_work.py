"""The MySQL unit of work of the request path's reads: one connection, one explicit
transaction (an order and its timeline read together), DB errors translated."""

from __future__ import annotations

import contextlib
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.messaging.outcomes import DependencyUnavailableError
from common.mysql import DbErrorKind, classify_db_error
from order_service.adapters.repository import MySqlIdempotencyRepository, MySqlOrderRepository
from order_service.services import DuplicateKeyError, LockTimeoutError

__all__ = ["DatabaseUnavailableError", "SqlUnitOfWork", "translate_db_error"]


class DatabaseUnavailableError(DependencyUnavailableError):
    """MySQL cannot be reached or did not answer in time (a consumer defers, never retries)."""


def translate_db_error(exc: BaseException) -> BaseException | None:
    kind = classify_db_error(exc)
    # SQLAlchemy's text repeats the statement; the driver's own error says what happened.
    message = str(getattr(exc, "orig", None) or exc)
    if kind is DbErrorKind.DUPLICATE_KEY:
        return DuplicateKeyError(message)
    if kind is DbErrorKind.CONFLICT:
        return LockTimeoutError(message)
    if kind is DbErrorKind.UNAVAILABLE:
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
        self.idempotency = MySqlIdempotencyRepository(self._conn)
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
