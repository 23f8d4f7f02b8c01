"""The order service's own consumers: fulfilment (OrderCreated) and the scheduler
(OrderScheduled), both on the shared consumer runner with retry tiers and a parking lot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
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
from common.messaging.outcomes import Ack, Defer, Outcome, Retry
from common.messaging.topology import Topology, apply_topology
from common.observability import get_logger
from order_service.domain.scheduling import Hold, next_step
from order_service.lifecycle import ConcurrencyConflictError, LifecycleService
from order_service.ports import PaymentGatewayError
from order_service.saga import FulfilmentRequest, FulfilmentSaga

__all__ = ["FulfilmentHandler", "FulfilmentWorker", "SchedulerHandler"]

log = get_logger(__name__)


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
        results = await self._saga.fulfil_batch(requests) if requests else {}
        outcomes: list[Outcome] = []
        for delivery in deliveries:
            if not isinstance(delivery.event, OrderCreatedV1):
                outcomes.append(Ack("ignored"))
                continue
            result = results[delivery.event.order_id]
            if isinstance(result, PaymentGatewayError):
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
        if isinstance(step, Hold):
            # Checked at every hop: a cancelled order stops waiting (and never starts).
            if not await self._lifecycle.still_scheduled(event.order_id):
                return Ack("cancelled")
            return Defer(step.delay)
        try:
            label = await self._lifecycle.start_scheduled(
                event.order_id, correlation_id=delivery.envelope.correlation_id
            )
        except ConcurrencyConflictError as exc:
            return Retry("conflict", str(exc))
        return Ack(label)


class FulfilmentWorker:
    """Connects in the background (the API serves while the broker is away), applies the
    topology and runs both consumers; ``stop`` drains in-flight work first."""

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
        prefetch: int,
        concurrency: int,
        max_attempts: int,
        batch_size: int = 100,
        batch_linger: float = 0.005,
    ) -> None:
        self._url = rabbitmq_url
        self._topology = topology
        self._specs = (topology.queue(fulfilment_queue), topology.queue(scheduler_queue))
        self._handlers = (fulfilment, scheduler)
        self._metrics = metrics
        self._prefetch = prefetch
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._batch_size = batch_size
        self._batch_linger = batch_linger
        self._connection: AbstractRobustConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self.runners: list[ConsumerRunner] = []
        self.ready = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="order-fulfilment")

    async def _run(self) -> None:
        self._connection = await connect_robust_forever(
            self._url, client_name="order-service-fulfilment"
        )
        channel = await self._connection.channel()
        await apply_topology(channel, self._topology)
        await channel.close()
        fulfilment, scheduler = self._handlers
        configs: tuple[tuple[BatchHandler, str, int, float], ...] = (
            (fulfilment, "fulfilment", self._batch_size, self._batch_linger),
            # One message per batch: a scheduled order waits alone, holding back no other ack.
            (PerMessage(scheduler), "scheduler", 1, 0.0),
        )
        for spec, (handler, name, batch_size, linger) in zip(self._specs, configs, strict=True):
            runner = ConsumerRunner(
                self._connection,
                spec,
                handler,
                self._metrics,
                prefetch=self._prefetch,
                batch_size=batch_size,
                batch_linger=linger,
                workers=self._concurrency,
                max_attempts=self._max_attempts,
                handler_name=name,
            )
            await runner.start()
            self.runners.append(runner)
        self.ready.set()
        log.info("fulfilment_started", queues=[s.name for s in self._specs])

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        for runner in self.runners:
            await runner.stop(timeout=10.0)
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.close(), 5)
