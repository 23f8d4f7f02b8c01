"""The order service's own consumers: fulfilment (OrderCreated) and the scheduler
(OrderScheduled), both on the shared consumer runner with retry tiers and a parking lot."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from aio_pika.abc import AbstractRobustConnection

from common.events import OrderCreatedV1, OrderScheduledV1
from common.messaging.connection import connect_robust_forever
from common.messaging.consumer import (
    BatchHandler,
    ConsumerMetrics,
    ConsumerRunner,
    Delivery,
    PerMessage,
)
from common.messaging.outcomes import Ack, Defer, Outcome, Retry, Unavailable
from common.messaging.topology import ConsumerQueue, Topology, apply_topology
from common.observability import get_logger
from common.supervision import Supervisor
from order_service.domain.scheduling import Hold, next_step
from order_service.lifecycle import ConcurrencyConflictError, LifecycleService
from order_service.ports import (
    PaymentGatewayError,
    PaymentGatewayUnavailableError,
    TransitionOutcomeUnknownError,
)
from order_service.saga import FulfilmentRequest, FulfilmentSaga
from order_service.services import LockTimeoutError
from order_service.unit_of_work import DatabaseUnavailableError

__all__ = ["FulfilmentHandler", "FulfilmentWorker", "SchedulerHandler"]

log = get_logger(__name__)

# The database cannot be reached, or a lock wait timed out (busy): an outage, not the message.
# A change whose commit could not be confirmed counts as down too: the redelivery finds it.
_DATABASE_DOWN = (DatabaseUnavailableError, LockTimeoutError, TransitionOutcomeUnknownError)


class FulfilmentHandler:
    """OrderCreated -> payment -> stock -> paid/confirmed, or a failure with compensation,
    a batch at a time (order_service/saga.py)."""

    def __init__(self, saga: FulfilmentSaga) -> None:
        self._saga = saga

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> Sequence[Outcome]:
        requests = [
            FulfilmentRequest(d.event.order_id, d.envelope.correlation_id)
            for d in deliveries
            if isinstance(d.event, OrderCreatedV1)
        ]
        try:
            results = await self._saga.fulfil_batch(requests) if requests else {}
        except _DATABASE_DOWN as exc:
            # The database is down or busy, not these orders at fault: wait without an attempt.
            outage = Unavailable("database_unavailable", repr(exc)[:300])
            return [
                outage if isinstance(d.event, OrderCreatedV1) else Ack("ignored")
                for d in deliveries
            ]
        outcomes: list[Outcome] = []
        for delivery in deliveries:
            if not isinstance(delivery.event, OrderCreatedV1):
                outcomes.append(Ack("ignored"))
                continue
            result = results[delivery.event.order_id]
            if isinstance(result, _DATABASE_DOWN):
                outcomes.append(Unavailable("database_unavailable", repr(result)[:300]))
            elif isinstance(result, PaymentGatewayUnavailableError):
                # DESIGN.md rule 7: the gateway's outage is not the order's fault.
                outcomes.append(Unavailable("payment_gateway_unavailable", str(result)[:300]))
            elif isinstance(result, PaymentGatewayError):
                outcomes.append(Retry("payment_gateway", str(result)))
            elif isinstance(result, ConcurrencyConflictError):
                outcomes.append(Retry("conflict", str(result)))
            elif isinstance(result, Exception):
                outcomes.append(Retry("handler_error", repr(result)))
            else:
                outcomes.append(Ack(result))
        return outcomes


class SchedulerHandler:
    """OrderScheduled: hop through the delay tiers until due, then scheduled -> created."""

    def __init__(
        self,
        lifecycle: LifecycleService,
        tiers: Sequence[float],
        clock: Callable[[], datetime],
    ) -> None:
        self._lifecycle = lifecycle
        self._tiers = tuple(tiers)
        self._clock = clock

    async def handle(self, delivery: Delivery) -> Outcome:
        event = delivery.event
        if not isinstance(event, OrderScheduledV1) or event.scheduled_time is None:
            return Ack("ignored")
        remaining = (event.scheduled_time - self._clock()).total_seconds()
        step = next_step(remaining, self._tiers)
        try:
            if isinstance(step, Hold):
                # Checked at every hop: a cancelled order stops waiting (and never starts).
                if not await self._lifecycle.still_scheduled(event.order_id):
                    return Ack("cancelled")
                return Defer(step.delay)
            label = await self._lifecycle.start_scheduled(
                event.order_id, correlation_id=delivery.envelope.correlation_id
            )
        except ConcurrencyConflictError as exc:
            return Retry("conflict", str(exc))
        except _DATABASE_DOWN as exc:
            # An outage never spends a scheduled order's attempts nor parks it (rule 7).
            return Unavailable("database_unavailable", repr(exc)[:300])
        return Ack(label)


class FulfilmentWorker:
    """Connects in the background (the API serves while the broker is away) and runs both
    consumers, each a supervised task: one that fails (at start or later) is logged, restarted
    with backoff and reported by readiness (DESIGN.md §4 rule 9); ``stop`` drains first."""

    def __init__(
        self,
        *,
        rabbitmq_url: str,
        topology: Topology,
        fulfilment_queue: str,
        scheduler_queue: str,
        fulfilment: FulfilmentHandler,
        scheduler: SchedulerHandler,
        metrics: ConsumerMetrics,
        supervisor: Supervisor,
        prefetch: int,
        concurrency: int,
        max_attempts: int,
        batch_size: int = 100,
        batch_linger: float = 0.005,
    ) -> None:
        self._url = rabbitmq_url
        self._topology = topology
        self._metrics = metrics
        self._prefetch = prefetch
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._connection: AbstractRobustConnection | None = None
        self._connecting = asyncio.Lock()
        self._supervisor = supervisor
        configs: tuple[tuple[str, BatchHandler, str, int, float], ...] = (
            (fulfilment_queue, fulfilment, "fulfilment", batch_size, batch_linger),
            # One message per batch: a scheduled order waits alone, holding back no other ack.
            (scheduler_queue, PerMessage(scheduler), "scheduler", 1, 0.0),
        )
        self._consumers = [_Consumer(topology.queue(q), h, n, b, lg) for q, h, n, b, lg in configs]
        for consumer in self._consumers:
            supervisor.add(
                f"consumer:{consumer.spec.name}",
                functools.partial(self._consume, consumer),
                healthy=consumer.consuming,
                stop=consumer.stop,
            )
        self.ready = asyncio.Event()

    @property
    def runners(self) -> list[ConsumerRunner]:
        return [c.runner for c in self._consumers if c.runner is not None]

    def start(self) -> None:
        self._supervisor.start()

    async def _connect(self) -> AbstractRobustConnection:
        async with self._connecting:
            if self._connection is None:
                self._connection = await connect_robust_forever(
                    self._url, client_name="order-service-fulfilment"
                )
        return self._connection

    async def _consume(self, consumer: _Consumer) -> None:
        connection = await self._connect()
        channel = await connection.channel()
        try:
            # Only this consumer's queues: one that cannot be declared fails alone, loudly.
            await apply_topology(channel, self._topology.only(consumer.spec.name))
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        consumer.runner = ConsumerRunner(
            connection,
            consumer.spec,
            consumer.handler,
            self._metrics,
            prefetch=self._prefetch,
            batch_size=consumer.batch_size,
            batch_linger=consumer.linger,
            workers=self._concurrency,
            max_attempts=self._max_attempts,
            handler_name=consumer.name,
        )
        try:
            await consumer.runner.start()
        except BaseException:
            await consumer.runner.stop(timeout=1.0)
            raise
        if all(c.consuming() for c in self._consumers):
            self.ready.set()
            log.info("fulfilment_started", queues=[c.spec.name for c in self._consumers])
        await consumer.runner.wait()

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        await self._supervisor.stop(timeout=10.0)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)


@dataclass
class _Consumer:
    spec: ConsumerQueue
    handler: BatchHandler
    name: str
    batch_size: int
    linger: float
    runner: ConsumerRunner | None = None

    def consuming(self) -> bool:
        return self.runner is not None and self.runner.consuming

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop(timeout=10.0)
