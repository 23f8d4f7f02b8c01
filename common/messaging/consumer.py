"""The consumer runner: bounded prefetch, batches, acks after the effect, retry tiers, DLQ.

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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
from prometheus_client import Counter, Histogram

from common.events import (
    ContractError,
    Envelope,
    EventData,
    UnknownEventType,
    decode_envelope,
    decode_event_data,
)
from common.messaging import tracing as messaging_tracing
from common.messaging.acks import AckBatcher
from common.messaging.outcomes import (
    Ack,
    Defer,
    DependencyUnavailableError,
    Outcome,
    Park,
    Retry,
    Unavailable,
)
from common.messaging.publisher import ConfirmingPublisher, OutgoingMessage
from common.messaging.topology import ConsumerQueue
from common.observability import Metrics, get_logger
from common.tracing import enabled as tracing_enabled

__all__ = [
    "ATTEMPT_HEADER",
    "OUTAGE_HEADER",
    "BatchHandler",
    "ConsumerMetrics",
    "ConsumerRunner",
    "Delivery",
    "MessageHandler",
    "PerMessage",
]

log = get_logger(__name__)

ATTEMPT_HEADER = "x-attempt"
PARK_REASON_HEADER = "x-park-reason"
LAST_ERROR_HEADER = "x-last-error"
PARKED_AT_HEADER = "x-parked-at"
SOURCE_QUEUE_HEADER = "x-source-queue"
ORIGINAL_ROUTING_KEY_HEADER = "x-original-routing-key"
# How many times in a row this message waited out a dependency outage (picks the next delay).
OUTAGE_HEADER = "x-outage"
# An outage defers through the tiers up to this delay, then stays there.
OUTAGE_MAX_DELAY = 60.0


@dataclass
class Delivery:
    """One received message, decoded as far as the contract allows."""

    message: AbstractIncomingMessage
    attempt: int
    envelope: Envelope
    event: EventData
    received_at: float = field(default_factory=time.monotonic)

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.message.headers or {})


class BatchHandler(Protocol):
    async def handle_batch(self, deliveries: Sequence[Delivery]) -> Sequence[Outcome]: ...


class MessageHandler(Protocol):
    async def handle(self, delivery: Delivery) -> Outcome: ...


class PerMessage:
    """Adapts a one-message handler to the batch interface, running the batch concurrently."""

    def __init__(self, handler: MessageHandler) -> None:
        self._handler = handler

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> Sequence[Outcome]:
        async def one(delivery: Delivery) -> Outcome:
            try:
                return await self._handler.handle(delivery)
            except ContractError as exc:
                return Park("invalid_payload", str(exc))
            except DependencyUnavailableError as exc:
                return Unavailable("dependency_unavailable", repr(exc))
            except Exception as exc:
                return Retry("handler_error", repr(exc))

        return await asyncio.gather(*(one(d) for d in deliveries))


class ConsumerMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.consumed: Counter = metrics.counter(
            "events_consumed_total",
            "Events taken off the work queue, by event type and outcome "
            "(applied, duplicate, ignored, retried, parked, deferred, ...)",
            ("event_type", "outcome"),
        )
        self.retried: Counter = metrics.counter(
            "events_retried_total", "Events republished to a retry tier", ("tier",)
        )
        self.parked: Counter = metrics.counter(
            "events_parked_total", "Events moved to the parking lot (DLQ)", ("reason",)
        )
        self.unavailable: Counter = metrics.counter(
            "events_deferred_unavailable_total",
            "Events deferred to a delay tier because a dependency was down (no attempt spent)",
            ("reason",),
        )
        self.republish_failures: Counter = metrics.counter(
            "events_republish_failures_total",
            "Retry, parking-lot or deferred copies the broker did not confirm (the original is "
            "kept unacked and the copy republished with backoff)",
        )
        self.handle_seconds: Histogram = metrics.histogram(
            "event_handle_seconds", "Time to handle one batch of events", ("handler",)
        )
        self.batch_size: Histogram = metrics.histogram(
            "event_batch_size",
            "Events per handled batch",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
        )


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
        ordered = sorted(queue.retry_delays)
        self._outage_delays = [d for d in ordered if d <= OUTAGE_MAX_DELAY] or ordered[:1]
        self._stopped = asyncio.Event()
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._consume_channel: AbstractChannel | None = None
        self._publish_channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._publisher: ConfirmingPublisher | None = None
        self._stopping = False
        self.in_flight = 0
        self._acks = AckBatcher()

    @property
    def consuming(self) -> bool:
        return self._consumer_tag is not None and not self._stopping

    async def start(self) -> None:
        self._publish_channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        self._publisher = ConfirmingPublisher(self._publish_channel, "")
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
            delivery_or_outcome = self._decode(message)
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
        await self._settle(results)

    async def _handle(self, deliveries: list[Delivery]) -> Sequence[Outcome]:
        if tracing_enabled():
            return await messaging_tracing.handle_batch(self._handler, deliveries, self._spec.name)
        return await self._handler.handle_batch(deliveries)

    def _decode(self, message: AbstractIncomingMessage) -> Delivery | Outcome:
        headers = message.headers or {}
        attempt = _int_header(headers.get(ATTEMPT_HEADER), default=1)
        if message.content_type not in (None, "", "application/json"):
            return Park("invalid_content_type", f"content_type={message.content_type!r}")
        try:
            envelope = decode_envelope(message.body)
            event = decode_event_data(envelope)
        except UnknownEventType:
            return Ack("ignored")
        except ContractError as exc:
            return Park("invalid_payload", str(exc)[:500])
        return Delivery(message=message, attempt=attempt, envelope=envelope, event=event)

    async def _settle(self, results: list[tuple[AbstractIncomingMessage, str, Outcome]]) -> None:
        to_publish: list[tuple[AbstractIncomingMessage, str, Outcome, OutgoingMessage]] = []
        to_ack: list[AbstractIncomingMessage] = []
        for message, event_type, outcome in results:
            if isinstance(outcome, Retry) and _attempt(message) >= self._max_attempts:
                outcome = Park(
                    "attempts_exhausted",
                    f"{outcome.reason}: {outcome.error}"[:500],
                    outcome.headers,
                )
            if isinstance(outcome, Ack):
                to_ack.append(message)
                self._metrics.consumed.labels(event_type, outcome.label).inc()
            else:
                to_publish.append((message, event_type, outcome, self._forward(message, outcome)))
        await self._acks.ack(to_ack)
        if not to_publish:
            return
        backoff, max_backoff = self._republish_backoff
        while True:
            failed = await self._republish(to_publish)
            if not failed:
                return
            # The broker did not take these copies: keep each original unacked (a nack with
            # requeue would come straight back: a loop) and republish it after a growing pause,
            # for as long as its channel lives. A closed channel has already handed it back to
            # the broker; a stopping runner hands it back to the queue for whoever consumes next.
            self._metrics.republish_failures.inc(len(failed))
            alive = [p for p in failed if _channel_open(p[0])]
            if not alive:
                return
            if self._stopping:
                for message, *_ in alive:
                    self._acks.release(message)
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
                return
            log.warning(
                "republish_unconfirmed",
                queue=self._spec.name,
                count=len(alive),
                retry_in=backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), backoff)
            backoff = min(backoff * 2, max_backoff)
            to_publish = alive

    async def _republish(
        self, to_publish: list[tuple[AbstractIncomingMessage, str, Outcome, OutgoingMessage]]
    ) -> list[tuple[AbstractIncomingMessage, str, Outcome, OutgoingMessage]]:
        """Publish the copies, ack the originals of the confirmed ones; return the others."""
        assert self._publisher is not None
        try:
            published = await self._publisher.publish_many([p[3] for p in to_publish])
        except Exception as exc:
            log.warning("republish_failed", error=repr(exc))
            published = []
        ok_ids = {id(p[3]) for p, r in zip(to_publish, published, strict=False) if r.ok}
        failed = [p for p in to_publish if id(p[3]) not in ok_ids]
        await self._acks.ack(p[0] for p in to_publish if id(p[3]) in ok_ids)
        for message, event_type, outcome, outgoing in to_publish:
            if id(outgoing) not in ok_ids:
                continue
            if isinstance(outcome, Retry):
                label = "retried"
                self._metrics.retried.labels(outgoing.routing_key.rsplit(".", 1)[-1]).inc()
                log.info(
                    "event_retried",
                    event_id=message.message_id,
                    reason=outcome.reason,
                    error=outcome.error,
                    tier=outgoing.routing_key,
                )
            elif isinstance(outcome, Park):
                label = "parked"
                self._metrics.parked.labels(outcome.reason).inc()
                log.warning(
                    "event_parked",
                    event_id=message.message_id,
                    reason=outcome.reason,
                    error=outcome.error,
                )
            elif isinstance(outcome, Unavailable):
                label = "unavailable"
                self._metrics.unavailable.labels(outcome.reason).inc()
                log.info(
                    "event_deferred_dependency_down",
                    event_id=message.message_id,
                    reason=outcome.reason,
                    error=outcome.error,
                    tier=outgoing.routing_key,
                )
            else:
                label = "deferred"
            self._metrics.consumed.labels(event_type, label).inc()
        return failed

    def _forward(self, message: AbstractIncomingMessage, outcome: Outcome) -> OutgoingMessage:
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-death")}
        headers.pop("x-delivery-count", None)
        attempt = _attempt(message)
        if not isinstance(outcome, Unavailable):
            headers.pop(OUTAGE_HEADER, None)  # the outage is over: the next one starts small
        if isinstance(outcome, Retry):
            tier = min(attempt, len(self._spec.retry_delays)) - 1
            target = self._spec.retry_queue(self._spec.retry_delays[tier])
            headers.update(outcome.headers)
            headers[ATTEMPT_HEADER] = attempt + 1
            headers[LAST_ERROR_HEADER] = f"{outcome.reason}: {outcome.error}"[:500]
        elif isinstance(outcome, Park):
            target = self._spec.dlq
            headers.update(outcome.headers)
            headers[PARK_REASON_HEADER] = outcome.reason
            headers[LAST_ERROR_HEADER] = outcome.error[:500]
            headers[ATTEMPT_HEADER] = attempt
            headers[PARKED_AT_HEADER] = datetime.now(UTC).isoformat()
            headers[SOURCE_QUEUE_HEADER] = self._spec.name
            headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key or "")
        elif isinstance(outcome, Defer):
            target = self._spec.retry_queue(outcome.delay)
            headers.update(outcome.headers)
        elif isinstance(outcome, Unavailable):
            # Not the message's fault: the attempt count stays as it is (rule 7).
            hops = max(0, _int_header(headers.get(OUTAGE_HEADER), default=0))
            delay = self._outage_delays[min(hops, len(self._outage_delays) - 1)]
            target = self._spec.retry_queue(delay)
            headers.update(outcome.headers)
            headers[OUTAGE_HEADER] = hops + 1
            headers[LAST_ERROR_HEADER] = f"{outcome.reason}: {outcome.error}"[:500]
        else:  # pragma: no cover - Ack never forwards
            raise AssertionError(outcome)
        return OutgoingMessage(
            body=message.body,
            routing_key=target,
            message_id=message.message_id or "",
            event_type=message.type or "",
            timestamp=message.timestamp or datetime.now(UTC),
            headers=headers,
            exchange="",
        )


def _int_header(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _attempt(message: AbstractIncomingMessage) -> int:
    return _int_header((message.headers or {}).get(ATTEMPT_HEADER), default=1)


def _channel_open(message: AbstractIncomingMessage) -> bool:
    """Whether the channel this message came on still lives (only it can ack the message)."""
    try:
        channel = message.channel  # aio-pika raises once that channel is closed
    except Exception:
        return False
    return not getattr(channel, "is_closed", False)
