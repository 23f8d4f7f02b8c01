"""The outbox relay: publishes committed outbox rows with confirms, marks them sent after.

Committed rows reach the relay in memory (``handoff``, called after each commit): they are
published and marked sent without being read back. The SELECT stays for recovery only: rows
older than ``recovery_grace`` that are still pending (this process restarted, another replica
died, a publish or the mark failed) are claimed with ``FOR UPDATE SKIP LOCKED``, so several
relays can recover at once. A crash between the confirm and the mark republishes a row;
consumers deduplicate by event_id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiormq.exceptions import ChannelAccessRefused
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from common.messaging import tracing as messaging_tracing
from common.messaging.connection import connect_robust_forever
from common.messaging.publisher import ConfirmingPublisher, OutgoingMessage, PublishResult
from common.messaging.topology import Topology, apply_topology
from common.observability import Metrics, get_logger
from common.supervision import Supervisor
from common.utc import aware_utc, naive_utc
from order_service.adapters.tables import outbox
from order_service.ports import OutboxEvent

__all__ = ["OutboxMetrics", "OutboxRelay"]

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
            "outbox_publish_batch_seconds", "Time to claim, publish and mark one outbox batch"
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
class _Row:
    id: int
    attempts: int
    event_id: str
    event_type: str
    routing_key: str
    payload: bytes
    headers: dict[str, Any]
    occurred_at: datetime


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        rabbitmq_url: str,
        topology: Topology,
        metrics: OutboxMetrics,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        confirm_timeout: float = 10.0,
        client_name: str = "order-service-relay",
        linger_seconds: float = 0.0,
        recovery_grace: float = 5.0,
        max_handoff: int = 20000,
        max_attempts: int = 10,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
    ) -> None:
        self._engine = engine
        self._url = rabbitmq_url
        self._topology = topology
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._confirm_timeout = confirm_timeout
        self._client_name = client_name
        self._linger = linger_seconds
        self._recovery_grace = recovery_grace
        self._grace_delta = timedelta(seconds=recovery_grace)
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        # Bounded: past it, committed rows simply wait for recovery instead of memory.
        self._fresh: deque[OutboxEvent] = deque(maxlen=max_handoff)
        self._wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._publisher: ConfirmingPublisher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()
        self._next_recovery = 0.0
        self._supervisor: Supervisor | None = None
        self._run_finished = asyncio.Event()
        self._flush_timeout = 10.0

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Run the publisher and the backlog watcher as plain tasks (tests, tools)."""
        self._tasks = [
            asyncio.create_task(self._run(), name="outbox-relay"),
            asyncio.create_task(self._watch_backlog(), name="outbox-backlog"),
        ]

    def register(self, supervisor: Supervisor) -> None:
        """Run under ``supervisor`` instead (the service's wiring; it starts them): a task
        that stops unexpectedly is logged, restarted with backoff and shown in readiness
        (DESIGN.md §4 rule 9)."""
        self._supervisor = supervisor
        supervisor.add("outbox-relay", self._run, stop=self._wait_flushed)
        supervisor.add("outbox-backlog", self._watch_backlog)

    async def _wait_flushed(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._run_finished.wait(), self._flush_timeout)

    def handoff(self, events: Sequence[OutboxEvent]) -> None:
        """Called after a commit with the outbox rows it wrote: publish them now."""
        self._fresh.extend(events)
        self._wake.set()

    def notify(self) -> None:
        """Look for pending rows now instead of at the next poll (rows written elsewhere)."""
        self._next_recovery = 0.0
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, flush_timeout: float = 10.0) -> None:
        """Flush what is pending (bounded), then close the broker connection."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        self._flush_timeout = flush_timeout
        if self._supervisor is not None:
            await self._supervisor.stop(timeout=flush_timeout)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks[:1], timeout=flush_timeout)
            for task in [*pending, *self._tasks[1:]]:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()

    # -- publishing ------------------------------------------------------------------------
    async def _connect(self) -> None:
        connection = await connect_robust_forever(self._url, client_name=self._client_name)
        try:
            self._connection = connection
            self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            await self._declare_topology()
        except BaseException:
            # Connected but not usable (channel or topology refused, or cancelled): close it,
            # or every retry leaves one more open connection behind.
            self._connection = self._channel = None
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        self._publisher = ConfirmingPublisher(self._channel, self._topology.exchange)
        self._ready.set()
        log.info("relay_connected", exchange=self._topology.exchange)

    async def _declare_topology(self) -> None:
        """The whole topology when the broker user may declare it (local guest); with a
        least-privilege user only the exchange, the consumers' queues being preloaded from the
        definitions file (deploy/rabbitmq) and declared by each consumer."""
        assert self._connection is not None
        setup = await self._connection.channel()
        try:
            await apply_topology(setup, self._topology)
        except ChannelAccessRefused as exc:
            log.warning("topology_queues_not_declared", reason=str(exc)[:200])
            setup = await self._connection.channel()
            await apply_topology(
                setup, Topology(self._topology.exchange, self._topology.exchange_type, ())
            )
        finally:
            with contextlib.suppress(Exception):
                await setup.close()

    async def _run(self) -> None:
        try:
            await self._publish_loop()
        finally:
            self._run_finished.set()

    async def _publish_loop(self) -> None:
        if self._connection is not None:  # restarted after a failure: start from scratch
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = self._channel = None
            self._publisher = None
            self._fresh.clear()
        backoff = 0.2
        connect_task: asyncio.Task[None] | None = asyncio.create_task(self._connect())
        try:
            while True:
                if connect_task is not None and connect_task.done():
                    if connect_task.exception() is not None:
                        log.warning(
                            "relay_connect_failed",
                            error=repr(connect_task.exception()),
                            retry_in=backoff,
                        )
                        self._fresh.clear()  # the broker is away: recovery publishes them later
                        await self._pause(backoff)
                        backoff = min(backoff * 2, 5.0)
                        connect_task = asyncio.create_task(self._connect())
                    else:
                        connect_task = None
                        backoff = 0.2
                self._metrics.connected.set(1 if self.connected else 0)
                if self._publisher is not None:
                    try:
                        while self._fresh:
                            await self.publish_fresh()
                        now = time.monotonic()
                        if now >= self._next_recovery or self._stopping:
                            while await self.publish_pending() >= self._batch_size:
                                pass
                            self._next_recovery = now + self._poll_interval
                        backoff = 0.2
                    except Exception as exc:
                        # Only the broker or the database failing lands here: a row that fails
                        # on its own is counted on that row (_record_failures) and the rest go on.
                        if self._stopping:  # nothing more can be flushed; rows stay pending
                            return
                        # Handed-over rows not yet confirmed stay pending: recovery finds them.
                        self._fresh.clear()
                        log.warning("relay_publish_failed", error=repr(exc), retry_in=backoff)
                        await self._pause(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                if self._stopping:
                    return
                if self._publisher is None and self._fresh and self._stale(self._fresh[0]):
                    self._fresh.clear()  # not connected for a while: recovery takes them
                wait = (
                    self._poll_interval
                    if self._publisher is None
                    else max(0.0, self._next_recovery - time.monotonic())
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                if self._linger > 0 and self._wake.is_set() and not self._stopping:
                    # A batch costs the same round trips for one row as for hundreds: let the
                    # commits of the next few milliseconds join this one.
                    await asyncio.sleep(self._linger)
                self._wake.clear()
        finally:
            if connect_task is not None and not connect_task.done():
                connect_task.cancel()

    def _stale(self, event: OutboxEvent) -> bool:
        return datetime.now(UTC) - event.occurred_at > self._grace_delta

    async def _pause(self, seconds: float) -> None:
        """Sleep that ends early on stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def publish_fresh(self) -> int:
        """Publish up to a batch of handed-over rows, then mark the confirmed ones sent."""
        assert self._publisher is not None
        started = time.perf_counter()
        batch = [self._fresh.popleft() for _ in range(min(self._batch_size, len(self._fresh)))]
        messages = [_event_message(e) for e in batch]
        results = await messaging_tracing.publish_many(
            self._publisher,
            messages,
            destination=self._topology.exchange,
            timeout=self._confirm_timeout,
        )
        sent = [str(e.event_id) for e, r in zip(batch, results, strict=True) if r.ok]
        outage = _outage(results)
        rejected = (
            [] if outage else [(e, r) for e, r in zip(batch, results, strict=True) if not r.ok]
        )
        if sent or rejected:
            async with self._engine.begin() as conn:
                if sent:
                    await conn.execute(
                        update(outbox)
                        .where(outbox.c.event_id.in_(sent))
                        .values(published_at=naive_utc(datetime.now(UTC)))
                    )
                for event, result in rejected:
                    # A handed-over row is fresh from its commit: this was its first attempt.
                    await self._record_failure(
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

    async def publish_pending(self) -> int:
        """Claim one batch, publish it with pipelined confirms, mark the confirmed rows sent.

        Returns how many rows were claimed. Raises when the broker is unreachable, after
        rolling back so the rows stay pending.
        """
        assert self._publisher is not None
        started = time.perf_counter()
        async with self._engine.connect() as conn, conn.begin():
            rows = await self._claim(conn)
            if not rows:
                return 0
            messages = [_to_message(row) for row in rows]
            results = await messaging_tracing.publish_many(
                self._publisher,
                messages,
                destination=self._topology.exchange,
                timeout=self._confirm_timeout,
            )
            now = naive_utc(datetime.now(UTC))
            sent = [row.id for row, r in zip(rows, results, strict=True) if r.ok]
            failed = [(row, r) for row, r in zip(rows, results, strict=True) if not r.ok]
            outage = _outage(results)
            if sent:
                await conn.execute(
                    update(outbox).where(outbox.c.id.in_(sent)).values(published_at=now)
                )
            for row, result in failed:
                self._count_failure(row.event_id, row.routing_key, result.returned)
                if not outage:  # an outage spends no attempts (DESIGN §4.7)
                    await self._record_failure(conn, outbox.c.id == row.id, row.attempts, result)
        for row, result in zip(rows, results, strict=True):
            if result.ok:
                self._metrics.published.labels(row.event_type).inc()
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        if outage:
            raise RuntimeError(f"{len(failed)} of {len(rows)} events not confirmed: {outage}")
        return len(rows)

    async def _record_failure(
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
            update(outbox).where(where, outbox.c.published_at.is_(None)).values(**values)
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

    async def _claim(self, conn: Any) -> list[_Row]:
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
                outbox.c.exchange == self._topology.exchange,
                outbox.c.published_at.is_(None),
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
            _Row(
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

    # -- backlog gauges and housekeeping ---------------------------------------------------
    async def _watch_backlog(self) -> None:
        # Returns on stop (the pause ends at once): a supervised task that only ends by
        # cancellation would hold every shutdown for the supervisor's grace period.
        while not self._stopping:
            try:
                await self.measure_backlog()
            except Exception as exc:
                log.debug("outbox_backlog_check_failed", error=repr(exc))
            await self._pause(2.0)

    async def measure_backlog(self) -> None:
        """Pending rows and their age (parked rows excluded: they have their own gauge)."""
        mine = (outbox.c.exchange == self._topology.exchange, outbox.c.published_at.is_(None))
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


def _outage(results: Sequence[PublishResult]) -> str | None:
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


def _event_message(event: OutboxEvent) -> OutgoingMessage:
    return OutgoingMessage(
        body=event.payload,
        routing_key=event.routing_key,
        message_id=str(event.event_id),
        event_type=event.event_type,
        timestamp=event.occurred_at,
        headers=event.headers,
    )


def _to_message(row: _Row) -> OutgoingMessage:
    return OutgoingMessage(
        body=row.payload,
        routing_key=row.routing_key,
        message_id=row.event_id,
        event_type=row.event_type,
        timestamp=row.occurred_at,
        headers=row.headers,
    )
