"""Marks confirmed outbox rows sent, the rows of many relay batches in one transaction.

A mark is bookkeeping for recovery only: the event is already on the broker. Marking each
relay batch on its own cost an UPDATE and a COMMIT (two round trips and a log flush) per
batch, and at the rates the system runs batches are small. Marks now wait ``linger`` seconds
and go together. A crash before the mark republishes those rows after the recovery grace
period, as a crash between confirm and mark always did; consumers deduplicate by event_id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from common.observability import get_logger
from order_service.adapters.outbox_store import OutboxStore
from order_service.adapters.tables import outbox

__all__ = ["SentMarks"]

log = get_logger(__name__)


class SentMarks:
    def __init__(
        self,
        engine: AsyncEngine,
        store: OutboxStore,
        *,
        linger: float = 0.1,
        max_pending: int = 20000,
    ) -> None:
        self._engine = engine
        self._store = store
        self._linger = linger
        self._max_pending = max_pending
        self._pending: list[str] = []
        # When the oldest row waiting for its mark occurred: recovery must not claim it.
        self.oldest: datetime | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, event_ids: Sequence[str], occurred: datetime) -> None:
        """Confirmed rows to mark soon; ``occurred``: when the oldest of them occurred."""
        if not event_ids:
            return
        if len(self._pending) < self._max_pending:  # past it recovery republishes (deduped)
            self._pending.extend(event_ids)
            self.oldest = _earlier(self.oldest, occurred)
        if self._timer is None and (self._task is None or self._task.done()):
            # A timer, not a sleeping task: settle() ends the linger at once instead of
            # waiting it out (it once held a recovery pass, and the stream, for 0.1 s).
            self._timer = asyncio.get_running_loop().call_later(self._linger, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        self._task = asyncio.create_task(self._flush_logged(), name="outbox-marks")

    async def settle(self) -> None:
        """Mark everything confirmed so far (before recovery looks for unmarked rows, and on
        stop). Raises when the database refuses; the rows stay to be marked."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            task, self._task = self._task, None
            # wait, not await: the relay's own cancellation (stop) must still reach it.
            await asyncio.wait([task])
        await self.flush()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def flush(self) -> None:
        while self._pending:
            ids, self._pending = self._pending, []
            oldest, self.oldest = self.oldest, None
            try:
                async with self._engine.begin() as conn:
                    await self._store.mark_sent(conn, outbox.c.event_id.in_(ids))
            except BaseException:
                # Kept for the next try; lost only with the process (then republished).
                self._pending[:0] = ids[: self._max_pending]
                self.oldest = _earlier(self.oldest, oldest)
                raise

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:
            # The relay meets the same database trouble in its next recovery pass and backs
            # off there; these rows wait for the next mark.
            log.warning("outbox_mark_failed", rows=len(self._pending), error=repr(exc))


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)
