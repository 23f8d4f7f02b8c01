"""Multi-statement packets on one pooled connection's raw driver: many statements, one round
trip, with every failure leaving the connection outside a transaction. Both writers of order_db
send through it: the group commit (new orders) and the transition store (every later change).

A packet that ends in COMMIT and loses its answer may have committed unseen. ``commit`` finds
out before its caller answers anyone (DESIGN.md §4 rule 6): every write of an order carries an
outbox row, so the row of one of its events witnesses whether the packet committed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import pymysql
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from common.mysql.errors import answered_by_server
from common.observability import get_logger
from common.sql_text import SqlText, fast_escape
from order_service.adapters.tables import outbox
from order_service.unit_of_work import DatabaseUnavailableError, translate_db_error

__all__ = ["CommitOutcomeUnknownError", "Packets"]

log = get_logger(__name__)

# Look-ups of a lost commit's witness: 0.1, 0.2, 0.4, 0.8, 1 s apart.
CHECK_ATTEMPTS = 5


class CommitOutcomeUnknownError(DatabaseUnavailableError):
    """A packet was sent with its COMMIT, no answer came, and the database could not be asked
    whether it committed."""


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

    async def commit(self, statements: Sequence[str], *, witness: uuid.UUID | None) -> None:
        """Send the statements and COMMIT as one packet. When the answer is lost after it was
        sent: return if the ``witness`` event's outbox row is there (it committed), raise the
        error if it is not, CommitOutcomeUnknownError if the database cannot be asked. Writes
        without a witness must be safe to send again; their error is raised as it came."""
        try:
            await self.run([*statements, "COMMIT"])
        except Exception:
            if not self.unanswered or witness is None:
                raise
            committed = await _outbox_row_exists(self._conn.engine, witness)
            if committed is None:
                raise CommitOutcomeUnknownError(f"commit of event {witness} unconfirmed") from None
            if not committed:
                raise

    async def rollback(self) -> None:
        try:
            await self._driver.rollback()
        except Exception:
            await self._conn.invalidate()


async def _outbox_row_exists(engine: AsyncEngine, event_id: uuid.UUID) -> bool | None:
    """Whether the event's outbox row is in the database; None if it cannot be asked."""
    delay = 0.1
    for _ in range(CHECK_ATTEMPTS):
        try:
            async with engine.connect() as conn:
                found = await conn.execute(
                    select(outbox.c.event_id).where(outbox.c.event_id == str(event_id))
                )
                return found.first() is not None
        except Exception as exc:
            log.warning("commit_outcome_check_failed", error=repr(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    return None
