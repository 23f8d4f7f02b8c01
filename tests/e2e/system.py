"""The real system as subprocesses on a private topology and free ports, for e2e and fault tests.

``RunningSystem`` starts the processes exactly as an operator does (``python -m ...``), waits
for /health/ready, and on exit stops them with SIGTERM, asserts each exited 0 (graceful
shutdown is part of the contract) and deletes the exchange and every queue it declared.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from types import TracebackType

import aio_pika

from common.messaging.topology import TopologySettings
from common.testing import unique_name
from loadtool.processes import SERVICES, ProcessGroup, free_port

__all__ = ["ALL_SERVICES", "RunningSystem"]

ALL_SERVICES: tuple[str, ...] = tuple(s.name for s in SERVICES)
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


class RunningSystem:
    """``async with RunningSystem() as system:`` - the URLs are on ``system``."""

    def __init__(
        self,
        services: Iterable[str] = ALL_SERVICES,
        *,
        env: Mapping[str, str] | None = None,
        retry_delays: str = "0.2,0.5",
        startup_timeout: float = 90.0,
        stop_timeout: float = 30.0,
        check_exit_codes: bool = True,
    ) -> None:
        base = unique_name("e2e")
        self.topology = TopologySettings(
            exchange=f"{base}.orders",
            analytics_queue=f"{base}.analytics.orders",
            notifications_queue=f"{base}.notifications.orders",
            analytics_delays=tuple(float(d) for d in retry_delays.split(",")),
            notification_delays=tuple(float(d) for d in retry_delays.split(",")),
        )
        ports = {s.port_env: str(free_port()) for s in SERVICES}
        self.env: dict[str, str] = {
            "LOG_LEVEL": "warning",
            "ORDERS_EXCHANGE": self.topology.exchange,
            "ANALYTICS_QUEUE": self.topology.analytics_queue,
            "NOTIFICATIONS_QUEUE": self.topology.notifications_queue,
            "ANALYTICS_RETRY_DELAYS": retry_delays,
            "NOTIFICATION_RETRY_DELAYS": retry_delays,
            "NOTIFY_REDIS_PREFIX": f"{base}:notify",
            **ports,
            **(env or {}),
        }
        self.services = list(services)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.check_exit_codes = check_exit_codes
        self.group = ProcessGroup(self.env)
        self.exit_codes: dict[str, int | None] = {}

    @property
    def order_url(self) -> str:
        return self.group.url("order")

    @property
    def analytics_url(self) -> str:
        return self.group.url("analytics-api")

    @property
    def analytics_consumer_url(self) -> str:
        return self.group.url("analytics-consumer")

    @property
    def notifications_url(self) -> str:
        return self.group.url("notifications")

    async def start(self, name: str) -> None:
        self.group.start(name)
        await self.group.wait_ready(name, self.startup_timeout)

    async def stop(self, name: str) -> int | None:
        return await self.group.stop(name, self.stop_timeout)

    def kill(self, name: str) -> None:
        self.group.kill(name)

    async def restart(self, name: str) -> int | None:
        code = await self.stop(name)
        await self.start(name)
        return code

    async def __aenter__(self) -> RunningSystem:
        try:
            await self.group.start_all(self.services, within=self.startup_timeout)
        except BaseException:
            await self.group.stop_all(within=10)
            await self.delete_topology()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.exit_codes = await self.group.stop_all(within=self.stop_timeout)
        finally:
            await self.delete_topology()
        if exc_type is None and self.check_exit_codes:
            bad = {n: c for n, c in self.exit_codes.items() if c != 0}
            assert not bad, f"unclean exit after SIGTERM: {bad}; " + "; ".join(
                f"{n} log tail:\n{self.group.log_tail(n)}" for n in bad
            )

    async def delete_topology(self) -> None:
        """The exchange, work queues, retry tiers and parking lots of this private topology."""
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(RABBITMQ_URL, timeout=10)
            try:
                channel = await connection.channel()
                topology = self.topology.topology()
                for spec in topology.queues:
                    for name in (spec.name, spec.dlq, *spec.retry_queues):
                        with contextlib.suppress(Exception):
                            await channel.queue_delete(name)
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(topology.exchange)
            finally:
                await connection.close()
