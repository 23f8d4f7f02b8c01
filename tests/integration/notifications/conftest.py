"""The notification worker against real RabbitMQ and Redis, with a webhook receiver in the test.

Every test gets private queue names (tiers 0.2/0.5/1 s), a private Redis key prefix, and a
worker running in the test's own event loop (or as a subprocess where a signal is the point).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import msgspec
import pytest
from redis.asyncio import Redis

from common.events import OrderCreatedV1, encode_envelope, new_envelope
from common.messaging.topology import TopologySettings
from common.testing import unique_name
from notification_worker.bootstrap import Worker
from notification_worker.settings import NotificationSettings, WebhookSettings

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
TIERS = (0.2, 0.5, 1.0)
WEBHOOK_SECRET = "test-secret"


@pytest.fixture
def test_topology() -> TopologySettings:
    """Overrides the suite's topology: a third, longer tier to hold scheduled sends."""
    base = unique_name("t")
    return TopologySettings(
        exchange=f"{base}.orders",
        analytics_queue=f"{base}.analytics.orders",
        notifications_queue=f"{base}.notifications.orders",
        analytics_delays=(0.2, 0.5),
        notification_delays=TIERS,
    )


async def keys_matching(redis: Redis, pattern: str) -> list[bytes]:
    """The keys matching ``pattern``, 10,000 looked at per SCAN: a Redis that holds a
    benchmark's million sent records took 22 s per scan at the default 10, in every teardown."""
    return [k async for k in redis.scan_iter(match=pattern, count=10_000)]


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = unique_name("notif-test")
    yield prefix
    redis = Redis.from_url(REDIS_URL)
    try:
        keys = await keys_matching(redis, f"{prefix}:*")
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class WebhookReceiver:
    """A raw asyncio HTTP endpoint: answers ``statuses`` in order, then ``default_status``,
    each after ``delay`` seconds. ``received`` holds arrivals, ``answered`` finished replies;
    ``on_request`` (if set) runs at each arrival, before the answer."""

    statuses: list[int] = field(default_factory=list)
    default_status: int = 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    answered: list[Received] = field(default_factory=list)
    port: int = 0
    on_request: Callable[[], Awaitable[None]] | None = None
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def successes(self) -> list[Received]:
        return [r for r in self.answered if 200 <= r.status < 300]

    async def start(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            index = len(self.received)
            status = self.statuses[index] if index < len(self.statuses) else self.default_status
            request = Received(time.monotonic(), headers, body, status)
            self.received.append(request)
            if self.on_request is not None:
                await self.on_request()
            await asyncio.sleep(self.delay)
            writer.write(
                f"HTTP/1.1 {status} X\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n"
                f"connection: close\r\n\r\nok".encode()
            )
            await writer.drain()
            self.answered.append(request)
        finally:
            writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    server = await WebhookReceiver().start()
    yield server
    await server.close()


@pytest.fixture
def worker_settings(cleanup_topology: TopologySettings, redis_prefix: str) -> NotificationSettings:
    return NotificationSettings(
        topology=cleanup_topology,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        max_attempts=3,
        prefetch=20,
        concurrency=8,
        shutdown_timeout=10,
        scheduled_gauge_interval=0.2,
    )


def webhook_settings(receiver: WebhookReceiver, timeout: float = 2.0) -> WebhookSettings:
    return WebhookSettings(url=receiver.url, secret=WEBHOOK_SECRET, timeout=timeout)


StartWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(worker_settings: NotificationSettings) -> AsyncIterator[StartWorker]:
    """``await start_worker(**setting_overrides)``: a worker in this loop, consuming, stopped
    at the end (without HTTP: tests of the HTTP side serve ``create_worker_app``)."""
    workers: list[Worker] = []

    async def start(**overrides: Any) -> Worker:
        worker = Worker(dataclasses.replace(worker_settings, **overrides))
        workers.append(worker)
        await worker.start()
        await asyncio.wait_for(worker.wait_consuming(), 30)
        return worker

    yield start
    for worker in workers:
        await worker.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def order_created(**data_extra: Any) -> tuple[str, bytes]:
    """An OrderCreated v1 body; ``data_extra`` adds fields to data (additive, still v1)."""
    order_id = uuid.uuid4()
    event = OrderCreatedV1(
        order_id=order_id,
        customer_id=unique_name("cust"),
        product_id="prod-1",
        quantity=2,
        total_amount=Decimal("19.98"),
        currency="USD",
        status="created",
        created_at=datetime.now(UTC),
    )
    envelope = new_envelope(event, producer="test", correlation_id=unique_name("corr"))
    body = encode_envelope(envelope)
    if data_extra:
        raw = msgspec.json.decode(body)
        raw["data"].update(data_extra)
        body = msgspec.json.encode(raw)
    return str(order_id), body


async def publish(
    amqp: aio_pika.abc.AbstractConnection, topology: TopologySettings, body: bytes
) -> str:
    """Publishes like the order service's relay: confirmed, mandatory, DESIGN.md §2 properties."""
    raw = msgspec.json.decode(body)
    channel = await amqp.channel(publisher_confirms=True)
    try:
        exchange = await channel.get_exchange(topology.exchange, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                body=body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=raw["event_id"],
                type=raw["event_type"],
                timestamp=datetime.now(UTC),
                headers={"correlation_id": raw["correlation_id"]},
            ),
            routing_key="order.created",
            mandatory=True,
        )
    finally:
        await channel.close()
    return str(raw["event_id"])


async def queue_depths(
    amqp: aio_pika.abc.AbstractConnection, topology: TopologySettings
) -> dict[str, int]:
    """Ready + unacked message counts of the work queue, every tier and the parking lot."""
    spec = topology.topology().queue(topology.notifications_queue)
    channel = await amqp.channel()
    try:
        depths = {}
        for name in (spec.name, *spec.retry_queues, spec.dlq):
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count or 0
        return depths
    finally:
        await channel.close()


async def audit_of(worker: Worker, order_id: str) -> dict[str, int]:
    return (await worker.store.audit([order_id])).get(order_id, {})


def metric(worker: Worker, name: str, labels: dict[str, str] | None = None) -> float:
    value = worker.metrics.registry.get_sample_value(f"notification_worker_{name}", labels or {})
    return value or 0.0
