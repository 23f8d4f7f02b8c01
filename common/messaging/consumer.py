"""The consumer runner: bounded prefetch, batches, acks after the effect (settlement.py).

DESIGN.md §4: ack only after the handler's effect is committed; transient failures are
republished (with a confirm) to a retry tier and then acked; permanent failures and exhausted
retries go to the parking lot; nothing is held unacked to wait out a delay. A dependency
outage (``Unavailable``, or a ``DependencyUnavailableError`` raised by the handler) waits in the
delay tiers without spending an attempt (rule 7). A copy the broker does not confirm keeps its
original unacked while the republish is retried with backoff: never a requeue loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from common.messaging import tracing as messaging_tracing
from common.messaging.acks import AckBatcher
from common.messaging.deliveries import (
    ATTEMPT_HEADER,
    LAST_ERROR_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    OUTAGE_HEADER,
    PARK_REASON_HEADER,
    PARKED_AT_HEADER,
    SOURCE_QUEUE_HEADER,
    BatchHandler,
    ConsumerMetrics,
    Delivery,
    MessageHandler,
    PerMessage,
    decode_delivery,
)
from common.messaging.outcomes import (
    DependencyUnavailableError,
    Outcome,
    Retry,
    Unavailable,
)
from common.messaging.publisher import ConfirmingPublisher
from common.messaging.settlement import Settlement
from common.messaging.topology import ConsumerQueue
from common.observability import get_logger
from common.tracing import enabled as tracing_enabled

# The names a consumer's code needs, importable from here as before the split.
__all__ = [
    "ATTEMPT_HEADER",
    "LAST_ERROR_HEADER",
    "ORIGINAL_ROUTING_KEY_HEADER",
    "OUTAGE_HEADER",
    "PARKED_AT_HEADER",
    "PARK_REASON_HEADER",
    "SOURCE_QUEUE_HEADER",
    "BatchHandler",
    "ConsumerMetrics",
    "ConsumerRunner",
    "Delivery",
    "MessageHandler",
    "PerMessage",
]

log = get_logger(__name__)


class ConsumerRunner:
    """Consumes one work queue and carries out the handler's outcome for every delivery."""

    def __init__(
        self,
        connection: AbstractConnection,
        queue: ConsumerQueue,
        handler: BatchHandler,
        metrics: ConsumerMetrics,
        *,
        prefetch: int = 200,
        batch_size: int = 100,
        workers: int = 1,
        max_attempts: int = 5,
        handler_name: str = "handler",
        batch_linger: float = 0.0,
        republish_backoff: tuple[float, float] = (0.2, 10.0),
    ) -> None:
        if prefetch < 1 or batch_size < 1 or workers < 1 or max_attempts < 1:
            raise ValueError("prefetch, batch_size, workers and max_attempts must be >= 1")
        self._connection = connection
        self._spec = queue
        self._handler = handler
        self._metrics = metrics
        self._prefetch = prefetch
        self._batch_size = batch_size
        self._workers = workers
        self._max_attempts = max_attempts
        self._handler_name = handler_name
        self._batch_linger = batch_linger
        self._republish_backoff = republish_backoff
        self._stopped = asyncio.Event()
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._consume_channel: AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._stopping = False
        self.in_flight = 0
        self._acks = AckBatcher()
        self._settlement = Settlement(
            queue,
            metrics,
            self._acks,
            max_attempts=max_attempts,
            republish_backoff=republish_backoff,
            stopped=self._stopped,
            stopping=lambda: self._stopping,
        )

    @property
    def consuming(self) -> bool:
        return self._consumer_tag is not None and not self._stopping

    async def start(self) -> None:
        self._publish_channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._settlement.publisher = ConfirmingPublisher(self._publish_channel, "")
        self._consume_channel = await self._connection.channel()
        await self._consume_channel.set_qos(prefetch_count=self._prefetch)
        # A (passive) declare, not get_queue: aio-pika's robust channel restores the consumer
        # after a reconnect only on queues it declared itself.
        self._queue = await self._consume_channel.declare_queue(self._spec.name, passive=True)
        self._tasks = [
            asyncio.create_task(self._work(), name=f"consumer-{self._spec.name}-{i}")
            for i in range(self._workers)
        ]
        self._consumer_tag = await self._queue.consume(self._receive, no_ack=False)
        log.info("consumer_started", queue=self._spec.name, prefetch=self._prefetch)

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        self._acks.received(message)
        await self._inbox.put(message)

    async def run(self) -> None:
        """Start, then consume until ``stop``; raises when the consumer cannot start or a worker
        dies, so that a supervisor (common/supervision.py) logs it and restarts a new runner."""
        try:
            await self.start()
        except BaseException:
            await self._close_channels()
            raise
        await self.wait()

    async def wait(self) -> None:
        """Return after ``stop``; raise if a worker loop ended on its own."""
        stopped = asyncio.create_task(self._stopped.wait())
        try:
            done, _ = await asyncio.wait(
                [stopped, *self._tasks], return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
        if self._stopping:
            return
        for task in done:
            if task is not stopped and not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"consumer worker on {self._spec.name} died") from (
                    task.exception()
                )
        raise RuntimeError(f"consumer worker on {self._spec.name} ended")

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop taking new work, finish and ack what was already delivered, then close."""
        if self._stopping:
            return
        self._stopping = True
        self._stopped.set()
        if self._queue is not None and self._consumer_tag is not None:
            # Bounded: during a broker outage the cancel would otherwise wait for a reconnect.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._queue.cancel(self._consumer_tag), 5.0)
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except TimeoutError:
            log.warning("consumer_stop_timeout", queue=self._spec.name)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._acks.close()
        await self._close_channels()
        log.info("consumer_stopped", queue=self._spec.name)

    async def _close_channels(self) -> None:
        for channel in (self._consume_channel, self._publish_channel):
            if channel is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(channel.close(), 5.0)

    async def _drain(self) -> None:
        while not self._inbox.empty() or self.in_flight:
            await asyncio.sleep(0.01)

    async def _work(self) -> None:
        while True:
            first = await self._inbox.get()
            batch = [first]
            # Counted from the moment they leave the inbox, so stop() waits for a lingering batch.
            self.in_flight += 1
            try:
                while len(batch) < self._batch_size and not self._inbox.empty():
                    batch.append(self._inbox.get_nowait())
                    self.in_flight += 1
                if self._batch_linger > 0 and len(batch) < self._batch_size:
                    # Each batch costs a transaction's round trips whatever its size: waiting a
                    # few milliseconds for company makes every event cheaper when they trickle.
                    before = len(batch)
                    await self._linger(batch)
                    self.in_flight += len(batch) - before
                await self._process(batch)
            except Exception:  # never let one batch kill the worker loop
                log.exception("consumer_batch_failed", queue=self._spec.name)
            finally:
                self.in_flight -= len(batch)

    async def _linger(self, batch: list[AbstractIncomingMessage]) -> None:
        deadline = asyncio.get_running_loop().time() + self._batch_linger
        while len(batch) < self._batch_size and not self._stopping:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                batch.append(await asyncio.wait_for(self._inbox.get(), remaining))
            except TimeoutError:
                return
            while len(batch) < self._batch_size and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())

    async def _process(self, messages: list[AbstractIncomingMessage]) -> None:
        deliveries: list[Delivery] = []
        immediate: list[tuple[AbstractIncomingMessage, str, Outcome]] = []
        for message in messages:
            delivery_or_outcome = decode_delivery(message)
            if isinstance(delivery_or_outcome, Delivery):
                deliveries.append(delivery_or_outcome)
            else:
                immediate.append((message, message.type or "unknown", delivery_or_outcome))

        results: list[tuple[AbstractIncomingMessage, str, Outcome]] = list(immediate)
        if deliveries:
            started = time.perf_counter()
            try:
                outcomes = list(await self._handle(deliveries))
                if len(outcomes) != len(deliveries):
                    raise RuntimeError("handler returned a different number of outcomes")
            except DependencyUnavailableError as exc:
                log.warning(
                    "handler_dependency_unavailable", queue=self._spec.name, error=repr(exc)
                )
                outcomes = [Unavailable("dependency_unavailable", repr(exc))] * len(deliveries)
            except Exception as exc:
                log.exception("handler_failed", queue=self._spec.name)
                outcomes = [Retry("handler_error", repr(exc))] * len(deliveries)
            self._metrics.handle_seconds.labels(self._handler_name).observe(
                time.perf_counter() - started
            )
            self._metrics.batch_size.observe(len(deliveries))
            results.extend(
                (d.message, d.envelope.event_type, o)
                for d, o in zip(deliveries, outcomes, strict=True)
            )
        await self._settlement.settle(results)

    async def _handle(self, deliveries: list[Delivery]) -> Sequence[Outcome]:
        if tracing_enabled():
            return await messaging_tracing.handle_batch(self._handler, deliveries, self._spec.name)
        return await self._handler.handle_batch(deliveries)
