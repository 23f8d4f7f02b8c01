"""What the fault scenarios share below the load: the real servers' addresses, proxies that
cut them for one run, a fault as a context manager, readiness of every process, a metric."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx

from common.testing import TcpProxy, wait_until
from tests.e2e.system import RunningSystem

__all__ = [
    "AMQP",
    "MYSQL",
    "ORDER_DB",
    "REDIS",
    "Fault",
    "cut",
    "metric",
    "proxy_to",
    "wait_all_ready",
]

MYSQL = ("127.0.0.1", 3306)
REDIS = ("127.0.0.1", 6379)
AMQP = ("127.0.0.1", 5672)
ORDER_DB = "mysql+aiomysql://order_svc:order_svc_local@127.0.0.1:{port}/order_db"

Fault = Callable[[], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def proxy_to(host_port: tuple[str, int]) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(*host_port).start()
    try:
        yield proxy
    finally:
        await proxy.close()


def cut(proxy: TcpProxy) -> Fault:
    @asynccontextmanager
    async def fault() -> AsyncIterator[None]:
        await proxy.cut()
        try:
            yield
        finally:
            await proxy.restore()

    return fault


async def _ready(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    try:
        response = await client.get(url + "/health/ready")
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


async def wait_all_ready(
    system: RunningSystem, *, broker: bool = False, timeout: float = 90
) -> float:
    """Seconds until every process is ready again (and, with ``broker``, the order service's
    relay is connected to RabbitMQ)."""
    started = time.monotonic()
    urls = [
        system.order_url,
        system.analytics_url,
        system.analytics_consumer_url,
        system.notifications_url,
    ]
    async with httpx.AsyncClient(timeout=2) as client:

        async def all_ready() -> bool:
            reports = [await _ready(client, u) for u in urls]
            if any(r is None for r in reports):
                return False
            order = reports[0] or {}
            return not broker or order.get("checks", {}).get("rabbitmq") == "up"

        await wait_until(all_ready, timeout=timeout, interval=0.1, message="every process ready")
    return time.monotonic() - started


async def metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=2) as client:
        text = (await client.get(url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
