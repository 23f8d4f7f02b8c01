"""The consumer process: the runner on analytics.orders plus /health and /metrics on 8083."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from aio_pika.abc import AbstractRobustConnection
from litestar import Litestar

from analytics_service.bootstrap import Adapters
from analytics_service.handlers import AnalyticsHandler
from analytics_service.metrics import SERVICE, ApplyMetrics
from analytics_service.pruner import InboxPruneMetrics, InboxPruning
from analytics_service.settings import AnalyticsSettings
from common.hosting import Host
from common.messaging.connection import connect_robust_forever
from common.messaging.consumer import ConsumerMetrics, ConsumerRunner
from common.messaging.topology import apply_topology
from common.observability import Metrics, configure_logging, get_logger
from common.supervision import Supervisor
from common.tracing import configure_tracing

__all__ = ["AnalyticsConsumer", "app_from_env", "create_consumer_app"]

log = get_logger(__name__)


class AnalyticsConsumer:
    """Owns the broker connection, the runner and the pools; ``stop`` drains and acks first.

    The runner is a supervised task (DESIGN.md §4 rule 9): one that cannot start, or dies, is
    logged, restarted with backoff and named by readiness."""

    def __init__(self, settings: AnalyticsSettings, metrics: Metrics) -> None:
        self._settings = settings
        self.metrics = metrics
        apply_metrics = ApplyMetrics(metrics)
        self._consumer_metrics = ConsumerMetrics(metrics)
        self.adapters = Adapters.build(
            settings, cache_invalidations=apply_metrics.cache_invalidations, consumer=True
        )
        self.handler = AnalyticsHandler(
            self.adapters.store,
            self.adapters.cache,
            apply_metrics,
            consumer=settings.consumer_name,
            clock=lambda: datetime.now(UTC),
            conflict_retries=settings.deadlock_retries,
        )
        self.pruning = InboxPruning(
            self.adapters.store,
            InboxPruneMetrics(metrics),
            consumer=settings.consumer_name,
            retention=timedelta(seconds=settings.inbox_retention_seconds),
            interval=settings.inbox_prune_interval_seconds,
            batch=settings.inbox_prune_batch,
            max_batches=settings.inbox_prune_max_batches,
            clock=lambda: datetime.now(UTC),
        )
        self._connection: AbstractRobustConnection | None = None
        self.runner: ConsumerRunner | None = None
        self.supervisor = Supervisor(metrics)
        self.task = f"consumer:{settings.topology.analytics_queue}"
        self.supervisor.add(self.task, self._consume, healthy=self._consuming, stop=self._drain)
        self.pruner_task = "analytics-inbox-pruner"
        self.supervisor.add(self.pruner_task, self.pruning.run)

    async def start(self) -> None:
        self.supervisor.start()

    async def _consume(self) -> None:
        topology = self._settings.topology.topology()
        if self._connection is None:
            self._connection = await connect_robust_forever(
                self._settings.rabbitmq_url, client_name="analytics-consumer"
            )
        channel = await self._connection.channel()
        try:
            # Only its own queues: its least-privilege broker user may not declare anyone else's.
            await apply_topology(channel, topology.only(self._settings.topology.analytics_queue))
        finally:
            with contextlib.suppress(Exception):
                await channel.close()
        self.runner = ConsumerRunner(
            self._connection,
            topology.queue(self._settings.topology.analytics_queue),
            self.handler,
            self._consumer_metrics,
            prefetch=self._settings.prefetch,
            batch_size=self._settings.batch_size,
            workers=self._settings.workers,
            max_attempts=self._settings.max_attempts,
            handler_name="analytics",
            batch_linger=self._settings.batch_linger_seconds,
        )
        await self.runner.run()

    def _consuming(self) -> bool:
        connected = self._connection is not None and self._connection.connected.is_set()
        return connected and self.runner is not None and self.runner.consuming

    async def _drain(self) -> None:
        if self.runner is not None:
            await self.runner.stop()

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        await self.adapters.close()
        log.info("analytics_consumer_stopped")

    async def rabbitmq_up(self) -> bool:
        return self._connection is not None and not self._connection.is_closed


def create_consumer_app(settings: AnalyticsSettings, *, configure_logs: bool = True) -> Litestar:
    """The consumer process on the common host: it consumes in the app's lifespan, drains and
    acks on SIGTERM; readiness names the consumer and the inbox pruner (supervised tasks)."""
    if configure_logs:
        configure_logging("analytics-consumer", settings.log_level)
        configure_tracing("analytics-consumer")
    metrics = Metrics(SERVICE)
    consumer = AnalyticsConsumer(settings, metrics)
    host = Host(
        "analytics-consumer",
        consumer,
        supervisors=(consumer.supervisor,),
        checks={
            "mysql": consumer.adapters.mysql_up,
            "rabbitmq": consumer.rabbitmq_up,
            "redis": consumer.adapters.redis_up,
        },
        required={"mysql", "rabbitmq"},
        drain_first=True,
    )
    app = host.app(metrics)
    app.state.consumer = consumer
    return app


def app_from_env() -> Litestar:
    return create_consumer_app(AnalyticsSettings.from_env())
