"""Deletes published outbox rows past their retention and expired idempotency keys.

Each DELETE is bounded (``LIMIT batch_size``, one short transaction, few locks held); a run
repeats it while full batches come back, with a short pause between, so a run clears whatever
accumulated since the last one and pruning keeps pace with any write rate the database takes.
A run is capped at ``max_batches`` per table so one run cannot hold the task forever; the next
run goes on. Parked and pending outbox rows are never pruned: their ``published_at`` is
``UNPUBLISHED``, in the year 9999.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common.observability import Metrics, get_logger

__all__ = ["PruneResult", "Pruner", "PrunerMetrics"]

log = get_logger(__name__)

_OUTBOX = (
    "DELETE FROM outbox WHERE exchange = :exchange "
    "AND published_at < UTC_TIMESTAMP(6) - INTERVAL :retention SECOND LIMIT {limit}"
)
_IDEMPOTENCY = "DELETE FROM idempotency_keys WHERE expires_at < UTC_TIMESTAMP(6) LIMIT {limit}"


class PrunerMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.pruned = metrics.counter(
            "pruned_rows_total",
            "Rows deleted by housekeeping: published outbox rows, expired idempotency keys",
            ("table",),
        )
        for table in ("outbox", "idempotency_keys"):
            self.pruned.labels(table)
        self.run_seconds = metrics.histogram(
            "prune_run_seconds", "Time for one pruning run over both tables"
        )


@dataclass(frozen=True)
class PruneResult:
    outbox: int
    idempotency_keys: int


class Pruner:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        exchange: str,
        metrics: PrunerMetrics,
        retention_seconds: int,
        interval_seconds: float = 10.0,
        batch_size: int = 5000,
        pause_seconds: float = 0.05,
        max_batches: int = 200,
    ) -> None:
        self._engine = engine
        self._exchange = exchange
        self._metrics = metrics
        self._retention = retention_seconds
        self._interval = interval_seconds
        self._batch_size = batch_size
        self._pause = pause_seconds
        self._max_batches = max_batches
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="order-pruner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception as exc:  # the database is away: the next run catches up
                log.warning("prune_failed", error=repr(exc), retry_in=self._interval)
            await asyncio.sleep(self._interval)

    async def prune_once(self) -> PruneResult:
        """Delete what is due in both tables, batch by batch, until less than a batch is left."""
        with self._metrics.run_seconds.time():
            outbox = await self._drain(
                "outbox",
                _OUTBOX.format(limit=self._batch_size),
                {"exchange": self._exchange, "retention": self._retention},
            )
            keys = await self._drain(
                "idempotency_keys", _IDEMPOTENCY.format(limit=self._batch_size), {}
            )
        if outbox or keys:
            log.info("pruned", outbox=outbox, idempotency_keys=keys)
        return PruneResult(outbox, keys)

    async def _drain(self, table: str, statement: str, params: dict[str, object]) -> int:
        total = 0
        for batch in range(self._max_batches):
            if batch:
                await asyncio.sleep(self._pause)  # let the write path have the database
            async with self._engine.begin() as conn:
                deleted = (await conn.execute(text(statement), params)).rowcount
            total += deleted
            self._metrics.pruned.labels(table).inc(deleted)
            if deleted < self._batch_size:
                break
        return total
