"""Rows handed to the relay after their commit, published as batches with several in flight.

A batch's confirms wait on the broker's disk writes. With one batch at a time the relay
managed one batch per confirm cycle and every commit queued behind it; near saturation that
cycle, not the CPU, bounded the rate and the end-to-end latency. Several batches now await
their confirms at once. Their order on the broker may differ from commit order, as after any
retry: consumers fold by order version and deduplicate by event_id.

Recovery (``recover``) claims rows older than the grace period. A row the relay still holds
must not be claimed as well, but waiting for every held row before each pass stopped the
stream once a second: under load the relay always holds young rows, and the pass waited for
their confirms and their marks (the e2e p99 at 300 orders/s showed it). Held rows now go first
only when one of them nears the grace period (a long backlog), and on stop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from order_service.adapters.outbox_marks import SentMarks
from order_service.ports import OutboxEvent

__all__ = ["PIPELINE_MIN_ROWS", "HandoffPipeline", "recover"]

# Rows waiting before a further batch starts while one is in flight: a trickle joins the next
# batch instead, since a batch costs a confirm round and a mark whatever its size.
PIPELINE_MIN_ROWS = 100

Publish = Callable[[list[OutboxEvent]], Coroutine[Any, Any, int]]


class HandoffPipeline:
    def __init__(
        self,
        publish: Publish,
        on_batch_done: Callable[[], None],
        *,
        batch_size: int,
        max_in_flight: int,
        max_rows: int,
    ) -> None:
        self._publish = publish
        self._on_batch_done = on_batch_done
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        # Bounded: past it, committed rows simply wait for recovery instead of memory.
        self.rows: deque[OutboxEvent] = deque(maxlen=max_rows)
        # When rows last left memory unpublished (full, forgotten): they wait in the outbox
        # until a recovery pass that can claim them all (``recover``) clears it.
        self.dropped_at: datetime | None = None
        # Each batch in flight with the time its oldest row occurred (what recovery could claim).
        self._in_flight: dict[asyncio.Task[int], datetime] = {}

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def oldest(self) -> datetime | None:
        """When the oldest row still held (waiting or in flight) occurred."""
        times = list(self._in_flight.values())
        if self.rows:
            times.append(min(row.occurred_at for row in self.rows))
        return min(times, default=None)

    @property
    def overflowed(self) -> bool:
        """Some committed rows may wait in the outbox only (a hold starts only when none do)."""
        return self.dropped_at is not None

    def add(self, events: Iterable[OutboxEvent]) -> None:
        self.rows.extend(events)
        if len(self.rows) == self.rows.maxlen:  # full: some may have fallen out
            self.dropped_at = datetime.now(UTC)

    def forget(self) -> None:
        """Drop the waiting rows from memory; recovery publishes them from the outbox, with
        the rows of any batch that failed (so this marks a drop even with none waiting)."""
        self.rows.clear()
        self.dropped_at = datetime.now(UTC)

    def waiting_since(self) -> datetime | None:
        """When the oldest row not yet started occurred."""
        return self.rows[0].occurred_at if self.rows else None

    def drop_older_than(self, age: timedelta) -> None:
        """Forget the waiting rows once the oldest is this old: recovery publishes them."""
        if self.rows and datetime.now(UTC) - self.rows[0].occurred_at > age:
            self.forget()

    def start(self) -> None:
        """Start batches of the waiting rows while slots are free."""
        while self.rows and len(self._in_flight) < self._max_in_flight:
            if self._in_flight and len(self.rows) < PIPELINE_MIN_ROWS:
                return
            batch = [self.rows.popleft() for _ in range(min(self._batch_size, len(self.rows)))]
            task = asyncio.create_task(self._publish(batch), name="outbox-relay-batch")
            self._in_flight[task] = min(row.occurred_at for row in batch)
            # A finished batch frees a slot (and may carry an error): the relay looks again.
            task.add_done_callback(lambda _: self._on_batch_done())

    def reap(self) -> None:
        """Forget finished batches; raise the first one's error (the relay backs off)."""
        done = [t for t in self._in_flight if t.done()]
        for task in done:
            del self._in_flight[task]
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error

    async def flush(self) -> None:
        """Publish every waiting row and wait for every batch (on stop, and before a recovery
        pass when a held row nears the grace period)."""
        while self.rows or self._in_flight:
            self.start()
            await asyncio.wait(list(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
            self.reap()

    async def settle(self, *, cancel: bool) -> None:
        """Let (or make) every batch in flight end, errors ignored: their unconfirmed rows
        stay pending in the outbox, where recovery finds them."""
        tasks = list(self._in_flight)
        self._in_flight.clear()
        for task in tasks if cancel else ():
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def cancel(self) -> None:
        for task in self._in_flight:
            task.cancel()


async def recover(
    handoff: HandoffPipeline,
    marks: SentMarks,
    claim_batch: Callable[[], Awaitable[int]],
    *,
    batch_size: int,
    grace: timedelta,
    everything: bool = False,
) -> None:
    """One recovery pass: claim and publish batches of rows older than ``grace`` until one
    comes back short. Held rows (waiting, in flight, confirmed but not yet marked) go first,
    published, confirmed and marked, when the oldest is past half the grace period, so the
    claim cannot take them too; and always when ``everything`` (on stop). Otherwise the pass
    leaves them to the stream and does not wait for them."""
    # Rows dropped from memory before this instant are past the grace period now: the pass
    # claims every one of them, and a drop during it leaves the mark set.
    claimable = datetime.now(UTC) - grace
    while True:
        if everything or _nearing(handoff, marks, grace):
            await handoff.flush()
            await marks.settle()
        if await claim_batch() < batch_size:
            break
    if handoff.dropped_at is not None and handoff.dropped_at < claimable:
        handoff.dropped_at = None


def _nearing(handoff: HandoffPipeline, marks: SentMarks, grace: timedelta) -> bool:
    held = [t for t in (handoff.oldest(), marks.oldest) if t is not None]
    return bool(held) and datetime.now(UTC) - min(held) > grace / 2
