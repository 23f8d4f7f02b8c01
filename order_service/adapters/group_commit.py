"""Group commit for new orders: concurrent requests share one MySQL transaction.

Each commit costs a round trip and an fsync; with 16 requests in flight, writing them as one
multi-row INSERT per table and one COMMIT costs little more than writing one. A request still
returns only after its own order and outbox row are committed, and a failing batch is retried
row by row so one bad order never fails its neighbours.

An answer tells the truth about the commit (DESIGN.md §4 rule 6): when a batch fails after its
COMMIT was sent (the acknowledgement may be lost), the batch's first outbox row is looked up
before anyone is answered (``Packets.commit``); found, every order of it is answered as
committed. When neither the commit nor the look-up
can be completed within the request's write budget, the caller learns that the outcome is
unknown (with the order id it can look up), never that the order failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from common import tracing
from common.mysql.engine import pooled
from common.observability import get_logger
from common.sql_text import SqlText
from common.utc import naive_utc
from order_service.adapters.packets import CommitOutcomeUnknownError, Packets
from order_service.adapters.rows import (
    first_transition_row,
    idempotency_row,
    order_row,
    outbox_row,
)
from order_service.domain.order import Order
from order_service.ports import IdempotencyRecord, OutboxEvent, WriteOutcomeUnknownError
from order_service.unit_of_work import translate_db_error

__all__ = ["GroupCommitOrderWriter", "WriteOutcomeUnknownError"]

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Item:
    order: Order
    event: OutboxEvent
    key: IdempotencyRecord | None
    replaces_expired_key: bool
    future: asyncio.Future[None]


# Each request's trace shows the shared transaction (its outbox row carries the request's
# context); the raw packet bypasses SQLAlchemy, so the per-transaction spans do not see it.
_SPAN: dict[str, Any] = {
    "kind": tracing.SpanKind.CLIENT,
    "attributes": {"db.system.name": "mysql", "db.operation.name": "INSERT"},
}


class GroupCommitOrderWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 64,
        writers: int = 2,
        timeout: float = 8.0,
    ) -> None:
        self._engine = engine
        self._timeout = timeout
        self._max_batch = max_batch
        self._writers = writers
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name=f"order-writer-{i}") for i in range(self._writers)
        ]

    async def stop(self) -> None:
        """Write what is queued and what is being written (join), then stop."""
        if self._tasks:
            await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def write(
        self,
        order: Order,
        event: OutboxEvent,
        *,
        key: IdempotencyRecord | None = None,
        replaces_expired_key: bool = False,
    ) -> None:
        if not self._tasks:
            self.start()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Item(order, event, key, replaces_expired_key, future))
        # shield: a client that disconnects does not cancel a commit already under way; the
        # order is then committed and published even though nobody reads the 201.
        try:
            await asyncio.wait_for(asyncio.shield(future), self._timeout)
        except TimeoutError:
            raise WriteOutcomeUnknownError(order.order_id) from None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[_Item]) -> None:
        try:
            with tracing.batch(
                "group commit order_db", (item.event.headers for item in batch), **_SPAN
            ):
                await self._insert(batch)
        except CommitOutcomeUnknownError:
            # The database cannot tell whether the batch committed: nobody is told "failed".
            for item in batch:
                _settle(item.future, WriteOutcomeUnknownError(item.order.order_id))
            return
        except Exception as exc:
            # Not committed (a lost answer was looked up first: Packets.commit). A failed
            # connect reaches here untranslated.
            if len(batch) == 1:
                _settle(batch[0].future, translate_db_error(exc) or exc)
                return
            log.warning("group_commit_batch_failed", size=len(batch), error=repr(exc))
            # Row by row, so one bad order fails alone and every other one is answered.
            for item in batch:
                await self._write([item])
            return
        for item in batch:
            _settle(item.future, None)

    async def _insert(self, batch: list[_Item]) -> None:
        """One packet, one round trip: the multi-row inserts and the COMMIT."""
        async with pooled(self._engine) as conn:
            packets = Packets(conn, (await conn.get_raw_connection()).driver_connection)
            # The batch is one transaction: any one of its outbox rows witnesses all of it.
            await packets.commit(_statements(packets.sql, batch), witness=batch[0].event.event_id)


def _statements(sql: SqlText, batch: list[_Item]) -> list[str]:
    keys = [(i.key, i.order.created_at) for i in batch if i.key is not None]
    expired = [
        (i.key.key, naive_utc(i.order.created_at))
        for i in batch
        if i.key is not None and i.replaces_expired_key
    ]
    statements = ["START TRANSACTION"]
    if expired:
        # The expired record of a key gives way to this request's, in the same transaction.
        statements.append(
            "DELETE FROM idempotency_keys WHERE "
            + " OR ".join(
                f"(idem_key = {sql.escape(key)} AND expires_at <= {sql.escape(now)})"
                for key, now in expired
            )
        )
    statements += [
        _insert(sql, "orders", [order_row(i.order) for i in batch]),
        _insert(sql, "outbox", [outbox_row(i.event) for i in batch]),
        # The timeline's first entry rides in the same transaction.
        _insert(sql, "order_transitions", [first_transition_row(i.order, i.event) for i in batch]),
    ]
    if keys:
        # Last: a concurrent request with the same key waits on this row's lock only until
        # this transaction ends, then finds the key taken and replays its answer.
        statements.append(
            _insert(sql, "idempotency_keys", [idempotency_row(k, now) for k, now in keys])
        )
    return statements


def _insert(sql: SqlText, table: str, rows: list[dict[str, object]]) -> str:
    columns = list(rows[0])
    return sql.insert(table, columns, ([row[c] for c in columns] for row in rows))


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
        # Mark retrieved: if the waiter is gone (client disconnected), do not log it as lost.
        with contextlib.suppress(Exception):
            future.exception()
