"""One relay batch: publish with pipelined confirms, then mark the confirmed rows sent (a
handed-over batch: soon, with other batches) and
spend an attempt of each row the broker refused on its own (an outage spends none)."""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncEngine

from common.messaging import tracing as messaging_tracing
from common.messaging.publisher import ConfirmingPublisher
from common.observability import get_logger
from order_service.adapters.outbox_marks import SentMarks
from order_service.adapters.outbox_store import (
    OutboxMetrics,
    OutboxStore,
    broker_outage,
    event_message,
    row_message,
)
from order_service.adapters.tables import outbox
from order_service.ports import OutboxEvent

__all__ = ["OutboxBatches"]

log = get_logger(__name__)


class OutboxBatches:
    def __init__(
        self,
        engine: AsyncEngine,
        store: OutboxStore,
        metrics: OutboxMetrics,
        marks: SentMarks,
        *,
        exchange: str,
        confirm_timeout: float,
    ) -> None:
        self._engine = engine
        self._marks = marks
        self._store = store
        self._metrics = metrics
        self._exchange = exchange
        self._confirm_timeout = confirm_timeout

    async def fresh(self, publisher: ConfirmingPublisher, batch: list[OutboxEvent]) -> int:
        """Publish rows handed over after their commit; the confirmed ones are marked sent
        soon after, together with other batches' (``SentMarks``)."""
        started = time.perf_counter()
        messages = [event_message(e) for e in batch]
        results = await messaging_tracing.publish_many(
            publisher,
            messages,
            destination=self._exchange,
            timeout=self._confirm_timeout,
        )
        self._marks.add(
            [str(e.event_id) for e, r in zip(batch, results, strict=True) if r.ok],
            min(e.occurred_at for e in batch),
        )
        outage = broker_outage(results)
        rejected = (
            [] if outage else [(e, r) for e, r in zip(batch, results, strict=True) if not r.ok]
        )
        if rejected:
            async with self._engine.begin() as conn:
                for event, result in rejected:
                    # A handed-over row is fresh from its commit: this was its first attempt.
                    await self._store.record_failure(
                        conn, outbox.c.event_id == str(event.event_id), 0, result
                    )
        failed = 0
        for event, result in zip(batch, results, strict=True):
            if result.ok:
                self._metrics.published.labels(event.event_type).inc()
                continue
            failed += 1
            self._count_failure(event.event_id, event.routing_key, result.returned)
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        if outage:
            raise RuntimeError(f"{failed} of {len(batch)} events not confirmed: {outage}")
        return len(batch)

    def _count_failure(self, event_id: object, routing_key: str, returned: bool) -> None:
        if returned:
            self._metrics.returned.inc()
            log.error("event_unroutable", event_id=str(event_id), routing_key=routing_key)
        else:
            self._metrics.confirm_failures.inc()

    async def pending(self, publisher: ConfirmingPublisher) -> int:
        """Claim one batch, publish it with pipelined confirms, mark the confirmed rows sent.

        Returns how many rows were claimed. Raises when the broker is unreachable, after
        rolling back so the rows stay pending.
        """
        started = time.perf_counter()
        async with self._engine.connect() as conn, conn.begin():
            rows = await self._store.claim(conn)
            if not rows:
                return 0
            messages = [row_message(row) for row in rows]
            results = await messaging_tracing.publish_many(
                publisher,
                messages,
                destination=self._exchange,
                timeout=self._confirm_timeout,
            )
            sent = [row.id for row, r in zip(rows, results, strict=True) if r.ok]
            failed = [(row, r) for row, r in zip(rows, results, strict=True) if not r.ok]
            outage = broker_outage(results)
            if sent:
                await self._store.mark_sent(conn, outbox.c.id.in_(sent))
            for row, result in failed:
                self._count_failure(row.event_id, row.routing_key, result.returned)
                if not outage:  # an outage spends no attempts (DESIGN §4.7)
                    await self._store.record_failure(
                        conn, outbox.c.id == row.id, row.attempts, result
                    )
        for row, result in zip(rows, results, strict=True):
            if result.ok:
                self._metrics.published.labels(row.event_type).inc()
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        if outage:
            raise RuntimeError(f"{len(failed)} of {len(rows)} events not confirmed: {outage}")
        return len(rows)
