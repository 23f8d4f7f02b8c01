"""The outbox relay: publishes committed outbox rows with confirms, marks them sent after.

Committed rows reach the relay in memory (``handoff``, called after each commit): they are
published and marked sent without being read back. The SELECT stays for recovery only: rows
older than ``recovery_grace`` that are still pending (this process restarted, another replica
died, a publish or the mark failed) are claimed with ``FOR UPDATE SKIP LOCKED``, so several
relays can recover at once. A crash between the confirm and the mark republishes a row;
consumers deduplicate by event_id. Under a burst it may hold fresh rows back (``RelayHold``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Sequence
from datetime import timedelta

from aio_pika.abc import AbstractRobustConnection
from sqlalchemy.ext.asyncio import AsyncEngine

from common.messaging.publisher import ConfirmingPublisher, open_confirming_publisher
from common.messaging.topology import Topology
from common.observability import get_logger
from common.supervision import Supervisor
from order_service.adapters.handoff import HandoffPipeline, recover
from order_service.adapters.outbox_batches import OutboxBatches
from order_service.adapters.outbox_marks import SentMarks
from order_service.adapters.outbox_store import (
    OutboxMetrics,
    OutboxStore,
)
from order_service.adapters.relay_hold import BurstHold, RelayHold
from order_service.ports import OutboxEvent

# OutboxMetrics is re-exported: the wiring builds it beside the relay.
__all__ = ["OutboxMetrics", "OutboxRelay"]

log = get_logger(__name__)


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
        batches_in_flight: int = 4,
        hold: BurstHold | None = None,
    ) -> None:
        self._url = rabbitmq_url
        self._topology = topology
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._client_name = client_name
        self._linger = linger_seconds
        self._grace = timedelta(seconds=recovery_grace)
        store = OutboxStore(
            engine,
            metrics,
            exchange=topology.exchange,
            batch_size=batch_size,
            recovery_grace=recovery_grace,
            max_attempts=max_attempts,
            retry_base_seconds=retry_base_seconds,
            retry_max_seconds=retry_max_seconds,
        )
        self._store = store
        self._marks = SentMarks(engine, store)
        self._batches = OutboxBatches(
            engine,
            store,
            metrics,
            self._marks,
            exchange=topology.exchange,
            confirm_timeout=confirm_timeout,
        )
        self._wake = asyncio.Event()
        self._handoff = HandoffPipeline(
            lambda batch: self.publish_fresh(batch),
            self._wake.set,
            batch_size=batch_size,
            max_in_flight=batches_in_flight,
            max_rows=max_handoff,
        )
        self._hold = RelayHold(hold, self._handoff, self._wake, on_release=self.notify)
        self._stopping = False
        self._stopped = asyncio.Event()
        self._watch_backlog = functools.partial(self._store.watch_backlog, self._stopped)
        self._connection: AbstractRobustConnection | None = None
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
        self._handoff.add(events)
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
        self._connection, self._publisher = await open_confirming_publisher(
            self._url, client_name=self._client_name, topology=self._topology
        )
        self._ready.set()
        log.info("relay_connected", exchange=self._topology.exchange)

    async def _run(self) -> None:
        try:
            await self._publish_loop()
        finally:
            self._run_finished.set()

    async def _publish_loop(self) -> None:
        if self._connection is not None:  # restarted after a failure: start from scratch
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
            self._publisher = None
            self._handoff.forget()
        await self._handoff.settle(cancel=True)
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
                        # The broker is away: recovery publishes them later.
                        self._handoff.forget()
                        await self._pause(backoff)
                        backoff = min(backoff * 2, 5.0)
                        connect_task = asyncio.create_task(self._connect())
                    else:
                        connect_task = None
                        backoff = 0.2
                self._metrics.connected.set(1 if self.connected else 0)
                if self._publisher is not None:
                    try:
                        self._handoff.reap()
                        if self._hold.holds(stopping=self._stopping):
                            await self._hold.wait()
                            continue
                        self._handoff.start()
                        now = time.monotonic()
                        if now >= self._next_recovery or self._stopping:
                            await recover(
                                self._handoff,
                                self._marks,
                                self.publish_pending,
                                batch_size=self._batch_size,
                                grace=self._grace,
                                everything=self._stopping,
                            )
                            self._next_recovery = now + self._poll_interval
                        backoff = 0.2
                    except Exception as exc:
                        # Only the broker or the database failing lands here: a row that fails
                        # on its own is counted on that row (_record_failures) and the rest go on.
                        if self._stopping:  # nothing more can be flushed; rows stay pending
                            return
                        # Handed-over rows not yet confirmed stay pending: recovery finds them.
                        self._handoff.forget()
                        await self._handoff.settle(cancel=False)
                        log.warning("relay_publish_failed", error=repr(exc), retry_in=backoff)
                        await self._pause(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                if self._stopping:
                    return
                if self._publisher is None:  # not connected for a while: recovery takes them
                    self._handoff.drop_older_than(self._grace)
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
            self._handoff.cancel()
            self._marks.cancel()

    async def _pause(self, seconds: float) -> None:
        """Sleep that ends early on stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    async def publish_fresh(self, batch: list[OutboxEvent]) -> int:
        """Publish a batch of handed-over rows; the confirmed ones are marked sent soon after."""
        assert self._publisher is not None
        return await self._batches.fresh(self._publisher, batch)

    async def publish_pending(self) -> int:
        """Claim one batch of pending rows (recovery), publish it, mark the confirmed sent."""
        assert self._publisher is not None
        return await self._batches.pending(self._publisher)

    async def measure_backlog(self) -> None:
        """Pending rows and their age, and parked rows, into the gauges."""
        await self._store.measure_backlog()
