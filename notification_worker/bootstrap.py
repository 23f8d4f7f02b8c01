"""The one place that wires concrete adapters into the worker and runs it until SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from aio_pika.abc import AbstractRobustConnection

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

__all__ = ["Worker", "run_worker"]

log = get_logger(__name__)
SERVICE = "notification-worker"


class _HttpServer(uvicorn.Server):
    """The worker owns SIGTERM (it must drain the consumer first), not uvicorn."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Broker:
    """Holds the connection and runner once they exist, for the readiness check."""

    def __init__(self) -> None:
        self.connection: AbstractRobustConnection | None = None
        self.runner: ConsumerRunner | None = None

    async def ready(self) -> bool:
        return (
            self.connection is not None
            and self.connection.connected.is_set()
            and self.runner is not None
            and self.runner.consuming
        )


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
    """The wired worker: ``start`` serves HTTP, connects (waiting for the broker as long as it
    takes), applies the topology and consumes; ``stop`` drains in-flight sends and closes."""

    def __init__(self, settings: NotificationSettings, *, serve_http: bool = True) -> None:
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
        self.supervisor.add(self.task, self._consume, healthy=self._consuming, stop=self._drain)
        self.supervisor.add(
            "scheduled-gauge",
            lambda: _refresh_scheduled(
                self.store, self.notification_metrics, settings.scheduled_gauge_interval
            ),
        )
        self._server: _HttpServer | None = None
        if serve_http:
            app = create_app(
                self.store,
                self.metrics,
                {
                    "broker": self.broker.ready,
                    "redis": self.store.ping,
                    "channels": _channels_ready(self.channels),
                    **self.supervisor.checks(),
                },
                api_keys=settings.api_keys,
            )
            self._server = _HttpServer(
                uvicorn.Config(
                    app,
                    host=settings.http_host,
                    port=settings.http_port,
                    log_config=None,
                    access_log=False,
                    lifespan="off",
                )
            )
        self._tasks: list[asyncio.Task[None]] = []
        self._consuming_event = asyncio.Event()

    async def start(self) -> None:
        """Serve HTTP and start the supervised tasks; returns once the consumer consumes (or
        keeps waiting for the broker: a SIGTERM meanwhile cancels the wait)."""
        if self._server is not None:
            self._tasks.append(asyncio.create_task(self._server.serve(), name="http"))
        self.supervisor.start()
        await self._consuming_event.wait()
        log.info(
            "notification_worker_started",
            channels=list(self.settings.channels),
            queue=self.spec.name,
            port=self.settings.http_port,
        )

    def _consuming(self) -> bool:
        return self.broker.runner is not None and self.broker.runner.consuming

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
        self._consuming_event.set()
        await runner.wait()

    async def stop(self) -> None:
        await self.supervisor.stop(timeout=self.settings.shutdown_timeout)
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 5)
        if self.broker.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.broker.connection.close(), 5)
        for channel in self.channels:
            with contextlib.suppress(Exception):
                await channel.close()
        with contextlib.suppress(Exception):
            await self._redis.aclose()


async def run_worker(settings: NotificationSettings) -> int:
    """Run until SIGTERM or SIGINT, then stop taking work, finish and ack in-flight sends."""
    configure_logging(SERVICE, settings.log_level)
    configure_tracing(SERVICE)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings)
    exit_code = 0
    starting = asyncio.create_task(worker.start())
    stopping = asyncio.create_task(stop.wait())
    try:
        # A SIGTERM while still waiting for the broker must not wait for the broker.
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            await stopping
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        log.info("notification_worker_stopping")
    except Exception:
        log.exception("notification_worker_failed")
        exit_code = 1
    finally:
        stopping.cancel()
        await worker.stop()
        log.info("notification_worker_stopped", exit_code=exit_code)
    return exit_code
