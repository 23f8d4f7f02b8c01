"""The one place that wires concrete adapters for the order service (cosmicpython bootstrap)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from common import tracing
from common.messaging.consumer import ConsumerMetrics
from common.mysql import build_engine as build_mysql_engine
from common.observability import Metrics, get_logger
from common.redis_client import redis_client
from common.supervision import Supervisor
from order_service.adapters.cache import RedisOrderCache
from order_service.adapters.group_commit import GroupCommitOrderWriter
from order_service.adapters.outbox_relay import OutboxMetrics, OutboxRelay
from order_service.adapters.payments import SimulatedPaymentGateway
from order_service.adapters.pruner import Pruner, PrunerMetrics
from order_service.adapters.transition_store import MySqlTransitionStore
from order_service.api.schemas import render_order
from order_service.burst_hold import BurstHold, HoldMetrics, IntakeGauge
from order_service.fulfilment import FulfilmentHandler, FulfilmentWorker, SchedulerHandler
from order_service.lifecycle import LifecycleService
from order_service.saga import FulfilmentSaga
from order_service.services import OrderService
from order_service.settings import OrderSettings
from order_service.unit_of_work import SqlUnitOfWork

__all__ = ["Container", "OrderMetrics", "Role"]

log = get_logger(__name__)


class Role(StrEnum):
    """The process a container is built for: ``python -m order_service`` or ``... fulfilment``."""

    API = "api"
    FULFILMENT = "fulfilment"


class OrderMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.orders_created = metrics.counter("orders_created_total", "Orders accepted (201)")
        self.idempotent_replays = metrics.counter(
            "idempotent_replays_total", "POST /orders answered from a stored Idempotency-Key"
        )
        self.cache_requests = metrics.counter(
            "cache_requests_total",
            "Order cache lookups by result: hit, miss, error (Redis failed), bypassed (Redis "
            "recently failed, served from MySQL)",
            ("result",),
        )
        self.db_unavailable = metrics.counter(
            "db_unavailable_total", "Requests answered 503 because MySQL was unavailable"
        )


def build_engine(settings: OrderSettings) -> AsyncEngine:
    return build_mysql_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        connect_timeout=settings.db_connect_timeout,
        # A request waiting on another's idempotency key gives up quickly with a 409.
        # lock_wait_timeout bounds metadata locks (LOCK TABLES, DDL) the same way.
        session={
            "innodb_lock_wait_timeout": settings.db_lock_wait_timeout,
            "lock_wait_timeout": settings.db_lock_wait_timeout,
        },
        # Every use goes through SQLAlchemy's Connection, which rolls back a transaction left
        # open when it closes; the pool's own ROLLBACK after every COMMIT was one more round
        # trip per transaction for nothing.
        reset_on_return=False,
        # No gap locks: concurrent inserts of new idempotency keys never deadlock each other.
        isolation_level="READ COMMITTED",
    )


@dataclass
class Container:
    settings: OrderSettings
    metrics: OrderMetrics
    registry_metrics: Metrics
    engine: AsyncEngine
    redis: Redis
    cache: RedisOrderCache
    relay: OutboxRelay | None
    pruner: Pruner
    writer: GroupCommitOrderWriter
    orders: OrderService
    lifecycle: LifecycleService
    gateway: SimulatedPaymentGateway
    fulfilment: FulfilmentWorker | None
    # Every long-running consumer task (rule 9): restarted with backoff, named in readiness.
    supervisor: Supervisor
    relay_supervisor: Supervisor
    # POST /orders in flight (the routes count them): the relay's hold reads it.
    intake: IntakeGauge

    # API: the order routes' writer and the pruner, and the consumers too if fulfilment runs
    # in the API process; FULFILMENT: only the consumers (and the relay of what they commit).
    role: Role = Role.API

    @classmethod
    def build(
        cls, settings: OrderSettings, registry_metrics: Metrics, *, role: Role = Role.API
    ) -> Container:
        metrics = OrderMetrics(registry_metrics)
        engine = build_engine(settings)
        tracing.instrument_engine(engine)
        redis = redis_client(settings.redis_url, timeout=settings.redis_timeout)
        cache = RedisOrderCache(
            redis, ttl_seconds=settings.cache_ttl_seconds, requests=metrics.cache_requests
        )
        intake = IntakeGauge()
        relay = None
        if settings.relay_enabled:
            relay = OutboxRelay(
                engine,
                rabbitmq_url=settings.rabbitmq_url,
                topology=settings.topology.topology(),
                metrics=OutboxMetrics(registry_metrics),
                batch_size=settings.relay_batch_size,
                batches_in_flight=settings.relay_batches_in_flight,
                poll_interval=settings.relay_poll_interval,
                linger_seconds=settings.relay_linger_seconds,
                max_attempts=settings.outbox_max_attempts,
                retry_base_seconds=settings.outbox_retry_seconds,
                # Only the API process takes POSTs: the fulfilment process never holds.
                hold=BurstHold(
                    intake,
                    concurrency=settings.relay_hold_concurrency,
                    min_rate=settings.relay_hold_min_rate,
                    max_hold=settings.relay_hold_max_seconds if role is Role.API else 0.0,
                    metrics=HoldMetrics(registry_metrics),
                ),
            )
        pruner = Pruner(
            engine,
            exchange=settings.topology.exchange,
            metrics=PrunerMetrics(registry_metrics),
            retention_seconds=settings.outbox_retention_seconds,
            interval_seconds=settings.prune_interval_seconds,
            batch_size=settings.prune_batch_size,
        )
        writer = GroupCommitOrderWriter(
            engine,
            max_batch=settings.write_batch_max,
            writers=settings.write_concurrency,
            timeout=settings.write_timeout_seconds,
        )
        orders = OrderService(
            lambda: SqlUnitOfWork(engine),
            cache,
            writer,
            render=render_order,
            clock=lambda: datetime.now(UTC),
            idempotency_ttl=timedelta(seconds=settings.idempotency_ttl_seconds),
            schedule_horizon=timedelta(seconds=settings.schedule_horizon_seconds),
            exchange=settings.topology.exchange,
            on_committed=relay.handoff if relay is not None else (lambda events: None),
        )
        gateway = SimulatedPaymentGateway(
            decline_rate=settings.payment_decline_rate,
            error_rate=settings.payment_error_rate,
            latency=settings.payment_latency_seconds,
        )
        transitions = MySqlTransitionStore(engine)
        lifecycle = LifecycleService(
            transitions,
            cache,
            gateway,
            render=render_order,
            clock=lambda: datetime.now(UTC),
            exchange=settings.topology.exchange,
            on_committed=relay.handoff if relay is not None else (lambda events: None),
        )
        supervisor = Supervisor(registry_metrics)
        # Its own supervisor: the relay stops after the consumers and the writer (it flushes
        # what they committed), so it cannot share their stop.
        relay_supervisor = Supervisor(registry_metrics, task_metrics=supervisor.task_metrics)
        if relay is not None:
            relay.register(relay_supervisor)
        fulfilment = None
        if settings.fulfilment_enabled and (role is Role.FULFILMENT or settings.fulfilment_in_api):
            topology = settings.topology.topology()
            scheduler_spec = topology.queue(settings.topology.scheduler_queue)
            fulfilment = FulfilmentWorker(
                rabbitmq_url=settings.rabbitmq_url,
                topology=topology,
                fulfilment_queue=settings.topology.fulfilment_queue,
                scheduler_queue=settings.topology.scheduler_queue,
                fulfilment=FulfilmentHandler(
                    FulfilmentSaga(
                        transitions,
                        cache,
                        gateway,
                        lifecycle,
                        render=render_order,
                        clock=lambda: datetime.now(UTC),
                        exchange=settings.topology.exchange,
                        on_committed=relay.handoff if relay is not None else (lambda events: None),
                    )
                ),
                scheduler=SchedulerHandler(
                    lifecycle, scheduler_spec.retry_delays, lambda: datetime.now(UTC)
                ),
                metrics=ConsumerMetrics(registry_metrics),
                supervisor=supervisor,
                prefetch=settings.fulfilment_prefetch,
                concurrency=settings.fulfilment_concurrency,
                max_attempts=settings.fulfilment_max_attempts,
                batch_size=settings.fulfilment_batch_size,
                batch_linger=settings.fulfilment_batch_linger_seconds,
            )
        return cls(
            settings,
            metrics,
            registry_metrics,
            engine,
            redis,
            cache,
            relay,
            pruner,
            writer,
            orders,
            lifecycle,
            gateway,
            fulfilment,
            supervisor,
            relay_supervisor,
            intake,
            role,
        )

    async def start(self) -> None:
        if self.role is Role.API:
            self.writer.start()
            self.pruner.start()
        if self.relay is not None:
            self.relay_supervisor.start()
        if self.fulfilment is not None:
            self.fulfilment.start()

    async def stop(self) -> None:
        # Consumers first: they may still commit transitions the relay should flush.
        if self.fulfilment is not None:
            await self.fulfilment.stop()
        await self.writer.stop()
        await self.pruner.stop()
        if self.relay is not None:
            await self.relay.stop()
        with contextlib.suppress(Exception):
            await self.cache.aclose()
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        await self.engine.dispose()
        log.info("order_service_stopped")

    async def mysql_up(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def redis_up(self) -> bool:
        return await self.cache.ping()

    async def rabbitmq_up(self) -> bool:
        return self.relay is not None and self.relay.connected
