"""Multi-statement packets on one pooled connection's raw driver: many statements, one round
trip, with every failure leaving the connection outside a transaction. Both writers of order_db
send through it: the group commit (new orders) and the transition store (every later change);
``unanswered`` tells them when a packet with a COMMIT may have committed unseen."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pymysql
from sqlalchemy.ext.asyncio import AsyncConnection

from common.mysql.errors import answered_by_server
from common.sql_text import SqlText, fast_escape
from order_service.unit_of_work import DatabaseUnavailableError, translate_db_error

__all__ = ["Packets"]


class Packets:
    """One pooled connection's driver, with every failure leaving it outside a transaction."""

    def __init__(self, conn: AsyncConnection, driver: Any) -> None:
        self._conn = conn
        self._driver = driver
        self.sql = SqlText(fast_escape(driver.escape, driver.escape_string), row_alias=False)
        # The last packet failed after it was sent, with no answer from the server: whatever
        # it held (a COMMIT too) may have run.
        self.unanswered = False

    async def run(self, statements: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Send the statements as one packet; the rows of every statement that has any."""
        results: list[list[dict[str, Any]]] = []
        try:
            async with self._driver.cursor() as cursor:
                await cursor.execute(";".join(statements))
                while True:
                    if cursor.description is not None:
                        names = [d[0] for d in cursor.description]
                        rows = await cursor.fetchall()
                        results.append([dict(zip(names, r, strict=True)) for r in rows])
                    if not await cursor.nextset():
                        break
        except pymysql.err.MySQLError as exc:
            if answered_by_server(exc):
                # Answered by the server, which stopped at the failing statement.
                await self.rollback()
            else:
                self.unanswered = True
                await self._conn.invalidate()
            raise translate_db_error(exc) or exc from exc
        except asyncio.CancelledError:
            await self._conn.invalidate()
            raise
        except Exception as exc:
            self.unanswered = True
            await self._conn.invalidate()
            raise DatabaseUnavailableError(repr(exc)) from exc
        return results

    async def rollback(self) -> None:
        try:
            await self._driver.rollback()
        except Exception:
            await self._conn.invalidate()
