"""The real system as subprocesses on a private topology and free ports, for e2e and fault tests.

``RunningSystem`` starts the processes exactly as an operator does (``python -m ...``), waits
for /health/ready, and on exit stops them with SIGTERM, asserts each exited 0 (graceful
shutdown is part of the contract) and deletes the exchange and every queue it declared.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Mapping
from types import TracebackType
from urllib.parse import quote

import aio_pika
import httpx

from common.messaging.topology import TopologySettings
from common.testing import unique_name
from deploy.rabbitmq.generate_definitions import USERS, VHOST, permissions_for
from loadtool.processes import SERVICES, ProcessGroup, free_port

__all__ = ["ALL_SERVICES", "BrokerUsers", "RunningSystem"]

ALL_SERVICES: tuple[str, ...] = tuple(s.name for s in SERVICES)
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
RABBITMQ_MANAGEMENT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
RABBITMQ_MANAGEMENT_AUTH = (
    os.environ.get("RABBITMQ_MANAGEMENT_USER", "guest"),
    os.environ.get("RABBITMQ_MANAGEMENT_PASSWORD", "guest"),
)
# Which broker account (deploy/rabbitmq/generate_definitions.py USERS) each process uses.
BROKER_ACCOUNT = {
    "order": "order-service",
    "analytics-api": "analytics-service",
    "analytics-consumer": "analytics-service",
    "notifications": "notification-worker",
}


class BrokerUsers:
    """Per-test RabbitMQ users on vhost ``orderflow`` with exactly the permissions production
    gives each service (``permissions_for``), computed for the test's private topology; the
    test's own admin connection (cleanup, taps) uses ``admin_url``."""

    def __init__(self, base: str, topology: TopologySettings) -> None:
        self.base = base
        self.topology = topology
        self.names: list[str] = []
        self.urls: dict[str, str] = {}  # broker account -> amqp url
        host = os.environ.get("RABBITMQ_HOST", "127.0.0.1:5672")
        self.admin_url = (
            f"amqp://{RABBITMQ_MANAGEMENT_AUTH[0]}:{RABBITMQ_MANAGEMENT_AUTH[1]}@{host}/{VHOST}"
        )
        self._host = host

    async def create(self) -> None:
        async with httpx.AsyncClient(
            base_url=RABBITMQ_MANAGEMENT_URL, auth=RABBITMQ_MANAGEMENT_AUTH, timeout=10
        ) as api:
            everything = {"configure": ".*", "write": ".*", "read": ".*"}
            admin = quote(RABBITMQ_MANAGEMENT_AUTH[0], safe="")
            (await api.put(f"/api/vhosts/{VHOST}", json={})).raise_for_status()
            (await api.put(f"/api/permissions/{VHOST}/{admin}", json=everything)).raise_for_status()
            for user in USERS:
                if user.role == "admin":
                    continue
                name = f"{self.base}-{user.name}"
                password = secrets.token_urlsafe(16)
                (
                    await api.put(f"/api/users/{name}", json={"password": password, "tags": ""})
                ).raise_for_status()
                self.names.append(name)
                (
                    await api.put(
                        f"/api/permissions/{VHOST}/{name}",
                        json=permissions_for(user, self.topology),
                    )
                ).raise_for_status()
                self.urls[user.name] = f"amqp://{name}:{password}@{self._host}/{VHOST}"

    async def delete(self) -> None:
        with contextlib.suppress(Exception):
            async with httpx.AsyncClient(
                base_url=RABBITMQ_MANAGEMENT_URL, auth=RABBITMQ_MANAGEMENT_AUTH, timeout=10
            ) as api:
                for name in self.names:
                    with contextlib.suppress(Exception):
                        await api.delete(f"/api/users/{name}")


class RunningSystem:
    """``async with RunningSystem() as system:`` - the URLs are on ``system``.

    ``service_env`` adds settings for one service only, keyed by service name (``order``,
    ``analytics-api``, ``analytics-consumer``, ``notifications``).

    ``least_privilege`` (``E2E_LEAST_PRIVILEGE=1`` makes it the default): every process
    connects to RabbitMQ as its own per-test user on vhost ``orderflow`` with the permissions
    production gives it, so a service needing more than it is granted fails here. Ignored when
    ``env`` sets RABBITMQ_URL (a test routing the broker through a proxy).
    """

    def __init__(
        self,
        services: Iterable[str] = ALL_SERVICES,
        *,
        env: Mapping[str, str] | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
        least_privilege: bool | None = None,
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
        if least_privilege is None:
            least_privilege = os.environ.get("E2E_LEAST_PRIVILEGE", "0") not in ("0", "false")
        explicit_broker = "RABBITMQ_URL" in (env or {})
        self.broker_users = (
            BrokerUsers(base, self.topology) if least_privilege and not explicit_broker else None
        )
        self.admin_url = self.broker_users.admin_url if self.broker_users else RABBITMQ_URL
        self._service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.check_exit_codes = check_exit_codes
        self.group = ProcessGroup(self.env, service_env=self._service_env)
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
        if self.broker_users is not None:
            await self.broker_users.create()
            for service, account in BROKER_ACCOUNT.items():
                extra = self.group.service_env.setdefault(service, {})
                extra.setdefault("RABBITMQ_URL", self.broker_users.urls[account])
        try:
            await self.group.start_all(self.services, within=self.startup_timeout)
        except BaseException:
            await self.group.stop_all(within=10)
            await self.delete_topology()
            if self.broker_users is not None:
                await self.broker_users.delete()
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
            if self.broker_users is not None:
                await self.broker_users.delete()
        if exc_type is None and self.check_exit_codes:
            bad = {n: c for n, c in self.exit_codes.items() if c != 0}
            assert not bad, f"unclean exit after SIGTERM: {bad}; " + "; ".join(
                f"{n} log tail:\n{self.group.log_tail(n)}" for n in bad
            )

    async def delete_topology(self) -> None:
        """The exchange, work queues, retry tiers and parking lots of this private topology."""
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(self.admin_url, timeout=10)
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
