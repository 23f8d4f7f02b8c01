"""The outbox table as the relay uses it: claiming pending rows for recovery, marking them
sent, spending a row's attempt (or parking it), and measuring the backlog; and how a batch's
publish results tell a broker outage from a row that failed on its own."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from common.messaging.publisher import OutgoingMessage, PublishResult
from common.observability import Metrics, get_logger
from common.utc import aware_utc, naive_utc
from order_service.adapters.tables import UNPUBLISHED, outbox
from order_service.ports import OutboxEvent

__all__ = [
    "OutboxMetrics",
    "OutboxStore",
    "PendingRow",
    "broker_outage",
    "event_message",
    "row_message",
]

log = get_logger(__name__)


class OutboxMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.published = metrics.counter(
            "events_published_total", "Outbox events confirmed by the broker", ("event_type",)
        )
        self.confirm_failures = metrics.counter(
            "publish_confirm_failures_total",
            "Publishes that were nacked, timed out or hit a closed channel",
        )
        self.returned = metrics.counter(
            "messages_returned_total", "Messages the broker returned as unroutable"
        )
        self.pending = metrics.gauge("outbox_pending_rows", "Outbox rows not yet published")
        self.oldest_age = metrics.gauge(
            "outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row"
        )
        self.batch_seconds = metrics.histogram(
            "outbox_publish_batch_seconds",
            "Time to publish one outbox batch until confirmed (a recovery batch: claim to mark)",
        )
        self.connected = metrics.gauge(
            "broker_connected", "1 while the relay's broker connection is open"
        )
        self.parked = metrics.counter(
            "outbox_rows_parked_total",
            "Outbox rows set aside after their last attempt (unroutable or nacked each time)",
        )
        self.parked_rows = metrics.gauge(
            "outbox_parked_rows",
            "Outbox rows parked and not replayed (python -m order_service outbox list)",
        )


@dataclass
class PendingRow:
    """A pending outbox row claimed for recovery."""

    id: int
    attempts: int
    event_id: str
    event_type: str
    routing_key: str
    payload: bytes
    headers: dict[str, Any]
    occurred_at: datetime


class OutboxStore:
    def __init__(
        self,
        engine: AsyncEngine,
        metrics: OutboxMetrics,
        *,
        exchange: str,
        batch_size: int,
        recovery_grace: float,
        max_attempts: int,
        retry_base_seconds: float,
        retry_max_seconds: float,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._exchange = exchange
        self._batch_size = batch_size
        self._grace_delta = timedelta(seconds=recovery_grace)
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds

    async def mark_sent(self, conn: Any, where: Any) -> None:
        await conn.execute(
            update(outbox).where(where).values(published_at=naive_utc(datetime.now(UTC)))
        )

    async def record_failure(
        self, conn: Any, where: Any, attempts_before: int, result: PublishResult
    ) -> None:
        """One more attempt spent by this row alone: retry it later, or park it for good."""
        attempts = attempts_before + 1
        now = datetime.now(UTC)
        delay = min(self._retry_base * 2 ** (attempts - 1), self._retry_max)
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_error": (result.error or "")[:500],
            "next_attempt_at": naive_utc(now + timedelta(seconds=delay)),
        }
        parked = attempts >= self._max_attempts
        if parked:
            values["parked_at"] = naive_utc(now)
        await conn.execute(
            update(outbox).where(where, outbox.c.published_at == UNPUBLISHED).values(**values)
        )
        if parked:
            self._metrics.parked.inc()
            log.error(
                "outbox_row_parked",
                message_id=result.message_id,
                attempts=attempts,
                error=result.error,
                hint="python -m order_service outbox list|replay|purge",
            )

    async def claim(self, conn: Any) -> list[PendingRow]:
        now = naive_utc(datetime.now(UTC))
        result = await conn.execute(
            select(
                outbox.c.id,
                outbox.c.attempts,
                outbox.c.event_id,
                outbox.c.event_type,
                outbox.c.routing_key,
                outbox.c.payload,
                outbox.c.headers,
                outbox.c.occurred_at,
            )
            .where(
                outbox.c.exchange == self._exchange,
                outbox.c.published_at == UNPUBLISHED,
                outbox.c.parked_at.is_(None),
                # Younger rows are on their way through a relay's memory (handoff).
                outbox.c.occurred_at < now - self._grace_delta,
                # A row that failed on its own waits out its retry delay; the rest go on.
                or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
            )
            .order_by(outbox.c.id)
            .limit(self._batch_size)
            .with_for_update(skip_locked=True)
        )
        return [
            PendingRow(
                id=r.id,
                attempts=r.attempts,
                event_id=r.event_id,
                event_type=r.event_type,
                routing_key=r.routing_key,
                payload=bytes(r.payload),
                headers=json.loads(r.headers),
                occurred_at=aware_utc(r.occurred_at),
            )
            for r in result
        ]

    async def watch_backlog(self, stopped: asyncio.Event, interval: float = 2.0) -> None:
        """Measure the backlog every ``interval`` until ``stopped``. It returns on stop: a
        supervised task that only ends by cancellation would hold every shutdown for the
        supervisor's grace period."""
        while not stopped.is_set():
            try:
                await self.measure_backlog()
            except Exception as exc:
                log.debug("outbox_backlog_check_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), interval)

    async def measure_backlog(self) -> None:
        """Pending rows and their age (parked rows excluded: they have their own gauge)."""
        mine = (outbox.c.exchange == self._exchange, outbox.c.published_at == UNPUBLISHED)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.min(outbox.c.occurred_at)).where(
                        *mine, outbox.c.parked_at.is_(None)
                    )
                )
            ).one()
            parked = (
                await conn.execute(
                    select(func.count()).where(*mine, outbox.c.parked_at.is_not(None))
                )
            ).scalar_one()
        count, oldest = row[0], row[1]
        self._metrics.pending.set(count)
        self._metrics.parked_rows.set(parked)
        age = 0.0
        if oldest is not None:
            age = max(0.0, (datetime.now(UTC) - aware_utc(oldest)).total_seconds())
        self._metrics.oldest_age.set(age)


def _rejected_by_broker(result: PublishResult) -> bool:
    """Returned as unroutable, or nacked: the broker answered about this message."""
    return result.returned or (result.error or "").startswith(_NACK_PREFIXES)


# How ConfirmingPublisher reports them: the aiormq exception's repr, or "unroutable".
_NACK_PREFIXES = ("<DeliveryError", "<PublishError", "unroutable")


def broker_outage(results: Sequence[PublishResult]) -> str | None:
    """Why the broker itself failed this batch, or None when only single messages failed.

    Timeouts and closed channels are the broker away. So is a nack of every message of a
    batch (a broker refusing all publishes): it spends no attempts and parks nothing.
    """
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    unanswered = [r for r in failed if not _rejected_by_broker(r)]
    if unanswered:
        return unanswered[0].error or "not confirmed"
    nacked = [r for r in failed if not r.returned]
    if len(results) > 1 and len(nacked) == len(results):
        return "every publish of the batch was nacked"
    return None


def event_message(event: OutboxEvent) -> OutgoingMessage:
    return OutgoingMessage(
        body=event.payload,
        routing_key=event.routing_key,
        message_id=str(event.event_id),
        event_type=event.event_type,
        timestamp=event.occurred_at,
        headers=event.headers,
    )


def row_message(row: PendingRow) -> OutgoingMessage:
    return OutgoingMessage(
        body=row.payload,
        routing_key=row.routing_key,
        message_id=row.event_id,
        event_type=row.event_type,
        timestamp=row.occurred_at,
        headers=row.headers,
    )
