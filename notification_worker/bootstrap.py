"""The one place that wires concrete adapters into the worker, hosted by the common host."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractRobustConnection
from litestar import Litestar

from common.hosting import Host
from common.messaging.connection import connect_robust_forever
from common.messaging.consumer import ConsumerMetrics, ConsumerRunner
from common.messaging.topology import apply_topology
from common.observability import Metrics, configure_logging, get_logger
from common.redis_client import redis_client
from common.supervision import Supervisor
from common.tracing import configure_tracing
from notification_worker.app import create_app
from notification_worker.handlers import NotificationHandler
from notification_worker.metrics import PREFIX, NotificationMetrics
from notification_worker.notifiers import Channel, build_channels
from notification_worker.planning import Planner
from notification_worker.sent_store import RedisSentStore, SentStore
from notification_worker.settings import NotificationSettings

__all__ = ["Worker", "app_from_env", "create_worker_app"]

log = get_logger(__name__)
SERVICE = "notification-worker"


class _Broker:
    """Holds the connection and runner once they exist, for the readiness check."""

    def __init__(self) -> None:
        self.connection: AbstractRobustConnection | None = None
        self.runner: ConsumerRunner | None = None

    def consuming(self) -> bool:
        return (
            self.connection is not None
            and self.connection.connected.is_set()
            and self.runner is not None
            and self.runner.consuming
        )

    async def ready(self) -> bool:
        return self.consuming()


async def _refresh_scheduled(
    store: SentStore, metrics: NotificationMetrics, interval: float
) -> None:
    while True:
        try:
            metrics.scheduled_pending.set(await store.scheduled_count())
        except Exception as exc:
            log.warning("scheduled_gauge_failed", error=repr(exc))
        await asyncio.sleep(interval)


def _channels_ready(channels: list[Channel]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all([await c.ready() for c in channels])

    return check


class Worker:
    """The wired worker: ``start`` starts the supervised consumer, which connects (waiting for
    the broker as long as it takes), applies the topology and consumes; ``stop`` drains
    in-flight sends, acks them and closes."""

    def __init__(self, settings: NotificationSettings) -> None:
        self.settings = settings
        self.metrics = Metrics(PREFIX)
        self.notification_metrics = NotificationMetrics(self.metrics)
        self._redis = redis_client(settings.redis_url, timeout=2.0)
        self.store = RedisSentStore(
            self._redis,
            prefix=settings.redis_prefix,
            sent_ttl_seconds=settings.sent_ttl_seconds,
            audit_ttl_seconds=settings.audit_ttl_seconds,
        )
        self.channels = list(build_channels(settings))
        self.spec = settings.queue
        self.handler = NotificationHandler(
            Planner(
                reminder_minutes=settings.reminder_minutes,
                max_ahead_seconds=settings.max_schedule_ahead_seconds,
            ),
            self.channels,
            self.store,
            self.notification_metrics,
            tiers=self.spec.retry_delays,
            claim_seconds=settings.claim_seconds,
            channel_concurrency=settings.channel_concurrency,
        )
        self.broker = _Broker()
        # The consumer and the gauge refresher are supervised (DESIGN.md §4 rule 9): a failure
        # is logged, restarted with backoff and named by readiness.
        self.supervisor = Supervisor(self.metrics)
        self.task = f"consumer:{self.spec.name}"
        self.supervisor.add(
            self.task, self._consume, healthy=self.broker.consuming, stop=self._drain
        )
        self.supervisor.add(
            "scheduled-gauge",
            lambda: _refresh_scheduled(
                self.store, self.notification_metrics, settings.scheduled_gauge_interval
            ),
        )
        self._consuming_event = asyncio.Event()

    async def start(self) -> None:
        self.supervisor.start()

    async def wait_consuming(self) -> None:
        """Returns once the consumer consumes (the tests' start; the host does not wait)."""
        await self._consuming_event.wait()

    async def _drain(self) -> None:
        if self.broker.runner is not None:
            await self.broker.runner.stop(timeout=self.settings.shutdown_timeout)

    async def _consume(self) -> None:
        if self.broker.connection is None:
            self.broker.connection = await connect_robust_forever(
                self.settings.rabbitmq_url, client_name=SERVICE
            )
        connection = self.broker.connection
        setup = await connection.channel()
        try:
            # Only its own queues: its least-privilege broker user may not declare anyone else's.
            await apply_topology(
                setup,
                self.settings.topology.topology().only(self.settings.topology.notifications_queue),
            )
        finally:
            with contextlib.suppress(Exception):
                await setup.close()
        runner = ConsumerRunner(
            connection,
            self.spec,
            self.handler,
            ConsumerMetrics(self.metrics),
            prefetch=self.settings.prefetch,
            # A batch shares its Redis round trips; a slow send holds back the acks of its own
            # batch only (up to the channel's timeout), while the other batches go on.
            batch_size=self.settings.batch_size,
            workers=self.settings.concurrency,
            batch_linger=self.settings.batch_linger_seconds,
            max_attempts=self.settings.max_attempts,
            handler_name="notifications",
        )
        self.broker.runner = runner
        try:
            await runner.start()
        except BaseException:
            await runner.stop(timeout=1.0)
            raise
        if not self._consuming_event.is_set():
            self._consuming_event.set()
            log.info(
                "notification_worker_started",
                channels=list(self.settings.channels),
                queue=self.spec.name,
                port=self.settings.http_port,
            )
        await runner.wait()

    async def stop(self) -> None:
        await self.supervisor.stop(timeout=self.settings.shutdown_timeout)
        if self.broker.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.broker.connection.close(), 5)
        for channel in self.channels:
            with contextlib.suppress(Exception):
                await channel.close()
        with contextlib.suppress(Exception):
            await self._redis.aclose()
        log.info("notification_worker_stopped")


def create_worker_app(settings: NotificationSettings, *, configure_logs: bool = True) -> Litestar:
    """The worker on the common host: it consumes in the app's lifespan and, on SIGTERM, stops
    taking work, finishes and acks in-flight sends, then exits 0."""
    if configure_logs:
        configure_logging(SERVICE, settings.log_level)
        configure_tracing(SERVICE)
    worker = Worker(settings)
    checks = {
        "broker": worker.broker.ready,
        "redis": worker.store.ping,
        "channels": _channels_ready(worker.channels),
    }
    host = Host(
        SERVICE,
        worker,
        supervisors=(worker.supervisor,),
        checks=checks,
        required=checks,
        drain_first=True,
    )
    app = create_app(worker.store, worker.metrics, host, api_keys=settings.api_keys)
    app.state.worker = worker
    app.state.host = host
    return app


def app_from_env() -> Litestar:
    """Factory for uvicorn."""
    return create_worker_app(NotificationSettings.from_env())
