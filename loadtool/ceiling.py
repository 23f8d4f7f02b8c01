"""The bare-infrastructure ceiling, measured in the same run as the system (CEILING.md method).

Each probe does the least work the system's hot path must do, with the raw driver and no
framework: an order row plus an outbox row per MySQL transaction, persistent publishes to a
quorum queue with pipelined confirms, consuming with manual acks, and Redis GETs. Scratch
tables and queues are created here and removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loadtool.mysql_admin import MySqlAdmin
from loadtool.stats import LatencySummary, rate, summarize

__all__ = ["CeilingConfig", "measure_ceiling", "mysql_ceiling", "rabbit_ceiling", "redis_ceiling"]


@dataclass(frozen=True)
class CeilingConfig:
    concurrency: int = 16
    duration: float = 8.0  # per probe
    mysql: MySqlAdmin = field(default_factory=MySqlAdmin)
    mysql_database: str = "bench_db"
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    redis_url: str = "redis://127.0.0.1:6379/0"
    publish_window: int = 500
    prefetch: int = 500

    @classmethod
    def from_env(cls, concurrency: int, duration: float, mysql: MySqlAdmin) -> CeilingConfig:
        e = os.environ
        return cls(
            concurrency=concurrency,
            duration=duration,
            mysql=mysql,
            mysql_database=e.get("BENCH_MYSQL_DATABASE", "bench_db"),
            rabbitmq_url=e.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            redis_url=e.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        )


def _payload(order_id: str) -> bytes:
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "event_id": str(uuid.uuid4()),
            "event_type": "OrderCreated",
            "event_version": 1,
            "occurred_at": now,
            "producer": "bench",
            "correlation_id": uuid.uuid4().hex,
            "data": {
                "order_id": order_id,
                "customer_id": "cust-1",
                "product_id": "prod-1",
                "quantity": 2,
                "total_amount": "19.98",
                "currency": "USD",
                "status": "created",
                "created_at": now,
            },
        }
    ).encode()


async def mysql_ceiling(cfg: CeilingConfig) -> dict[str, Any]:
    """Order row + outbox row, one transaction each, ``concurrency`` connections, raw aiomysql."""

    tag = uuid.uuid4().hex[:8]
    orders, outbox = f"bench_orders_{tag}", f"bench_outbox_{tag}"
    admin = await cfg.mysql.connect(autocommit=True, connect_timeout=5)
    try:
        async with admin.cursor() as cur:
            with warnings.catch_warnings():  # "database exists" is a note, not a problem
                warnings.simplefilter("ignore")
                await cur.execute(f"CREATE DATABASE IF NOT EXISTS `{cfg.mysql_database}`")
            await cur.execute(f"USE `{cfg.mysql_database}`")
            await cur.execute(
                f"CREATE TABLE {orders} (id VARCHAR(36) PRIMARY KEY, customer_id VARCHAR(64) "
                "NOT NULL, product_id VARCHAR(64) NOT NULL, quantity INT NOT NULL, "
                "total_amount DECIMAL(14,4) NOT NULL, currency CHAR(3) NOT NULL, status "
                "VARCHAR(32) NOT NULL, version INT NOT NULL DEFAULT 1, created_at DATETIME(6) "
                "NOT NULL, updated_at DATETIME(6) NOT NULL) ENGINE=InnoDB"
            )
            await cur.execute(
                f"CREATE TABLE {outbox} (id BIGINT AUTO_INCREMENT PRIMARY KEY, event_id "
                "VARCHAR(36) NOT NULL UNIQUE, aggregate_id VARCHAR(36) NOT NULL, event_type "
                "VARCHAR(64) NOT NULL, routing_key VARCHAR(128) NOT NULL, payload BLOB NOT NULL, "
                "headers TEXT NOT NULL, occurred_at DATETIME(6) NOT NULL, published_at "
                "DATETIME(6) NULL, attempts SMALLINT NOT NULL DEFAULT 0, KEY (published_at, id)"
                ") ENGINE=InnoDB"
            )
        insert_order = (
            f"INSERT INTO {orders} (id, customer_id, product_id, quantity, total_amount, "
            "currency, status, created_at, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
        )
        insert_outbox = (
            f"INSERT INTO {outbox} (event_id, aggregate_id, event_type, routing_key, payload, "
            "headers, occurred_at) VALUES (%s,%s,%s,%s,%s,%s,%s)"
        )
        latencies: list[float] = []
        stop_at = time.monotonic() + cfg.duration

        async def worker() -> None:
            conn = await cfg.mysql.connect(
                db=cfg.mysql_database, autocommit=False, connect_timeout=5
            )
            try:
                async with conn.cursor() as cur:
                    while time.monotonic() < stop_at:
                        started = time.perf_counter()
                        order_id = str(uuid.uuid4())
                        now = datetime.now(UTC).replace(tzinfo=None)
                        await cur.execute(
                            insert_order,
                            (order_id, "cust-1", "prod-1", 2, "19.98", "USD", "created", now, now),
                        )
                        await cur.execute(
                            insert_outbox,
                            (
                                str(uuid.uuid4()),
                                order_id,
                                "OrderCreated",
                                "order.created",
                                _payload(order_id),
                                "{}",
                                now,
                            ),
                        )
                        await conn.commit()
                        latencies.append(time.perf_counter() - started)
            finally:
                conn.close()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))
        elapsed = time.perf_counter() - began
        lat = summarize(latencies)
        return {
            "txn_per_s": round(rate(len(latencies), elapsed), 1),
            "txns": len(latencies),
            "latency_ms": lat.as_dict(),
        }
    finally:
        with contextlib.suppress(Exception):
            async with admin.cursor() as cur:
                await cur.execute(f"DROP TABLE IF EXISTS {orders}, {outbox}")
        admin.close()


async def rabbit_ceiling(cfg: CeilingConfig) -> dict[str, Any]:
    """Persistent publishes to a scratch quorum queue, confirms awaited per window (pipelined),
    then consuming them all back with manual acks; the queue is deleted afterwards."""
    import aio_pika

    queue_name = f"bench.ceiling.{uuid.uuid4().hex[:10]}"
    connection = await aio_pika.connect(cfg.rabbitmq_url, timeout=10)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        try:
            body = _payload(str(uuid.uuid4()))
            window_latencies: list[float] = []
            published = 0
            stop_at = time.monotonic() + cfg.duration
            began = time.perf_counter()
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        channel.default_exchange.publish(
                            aio_pika.Message(
                                body,
                                message_id=str(uuid.uuid4()),
                                type="OrderCreated",
                                content_type="application/json",
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            ),
                            routing_key=queue_name,
                            mandatory=True,
                        )
                        for _ in range(cfg.publish_window)
                    )
                )
                window_latencies.append(time.perf_counter() - started)
                published += cfg.publish_window
            publish_elapsed = time.perf_counter() - began

            consumed = 0
            done = asyncio.Event()
            await channel.set_qos(prefetch_count=cfg.prefetch)

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                nonlocal consumed
                await message.ack()
                consumed += 1
                if consumed >= published:
                    done.set()

            began = time.perf_counter()
            tag = await queue.consume(on_message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), max(30.0, cfg.duration * 4))
            consume_elapsed = time.perf_counter() - began
            await queue.cancel(tag)
            hop = await _hop_latency(channel, queue, aio_pika)
            return {
                "publish_per_s": round(rate(published, publish_elapsed), 1),
                "published": published,
                "window": cfg.publish_window,
                "window_confirm_ms": summarize(window_latencies).as_dict(),
                "consume_per_s": round(rate(consumed, consume_elapsed), 1),
                "consumed": consumed,
                "prefetch": cfg.prefetch,
                "hop_latency_ms": hop.as_dict(),
            }
        finally:
            with contextlib.suppress(Exception):
                cleanup = await connection.channel()
                await cleanup.queue_delete(queue_name)
    finally:
        await connection.close()


async def _hop_latency(
    channel: Any, queue: Any, aio_pika: Any, count: int = 400, per_s: float = 500.0
) -> LatencySummary:
    """Publish (confirmed) -> consumed, per message, at a moderate paced rate: the broker's share
    of the end-to-end latency with nothing else on the path."""
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_message(message: Any) -> None:
        started = sent.pop(message.message_id or "", None)
        if started is not None:
            latencies.append(time.perf_counter() - started)
        await message.ack()
        if len(latencies) >= count:
            done.set()

    tag = await queue.consume(on_message)
    body = _payload("hop")
    pending: set[asyncio.Task[Any]] = set()
    began = time.perf_counter()
    for i in range(count):
        due = began + i / per_s
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        message_id = uuid.uuid4().hex
        sent[message_id] = time.perf_counter()
        task = asyncio.ensure_future(
            channel.default_exchange.publish(
                aio_pika.Message(
                    body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                ),
                routing_key=queue.name,
            )
        )
        pending.add(task)
        task.add_done_callback(pending.discard)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), 30)
    await queue.cancel(tag)
    return summarize(latencies)


async def redis_ceiling(cfg: CeilingConfig) -> dict[str, Any]:
    """Unpipelined GETs of one cached order-sized value from ``concurrency`` tasks."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(cfg.redis_url, max_connections=cfg.concurrency)
    key = f"bench:ceiling:{uuid.uuid4().hex}"
    try:
        await client.set(key, _payload("x"), ex=300)
        count = 0
        stop_at = time.monotonic() + cfg.duration
        latencies: list[float] = []

        async def worker() -> None:
            nonlocal count
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                await client.get(key)
                latencies.append(time.perf_counter() - started)
                count += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(cfg.concurrency)))
        elapsed = time.perf_counter() - began
        return {
            "get_per_s": round(rate(count, elapsed), 1),
            "gets": count,
            "latency_ms": summarize(latencies).as_dict(),
        }
    finally:
        with contextlib.suppress(Exception):
            await client.delete(key)
        await client.aclose()


async def measure_ceiling(cfg: CeilingConfig) -> dict[str, Any]:
    """Runs each probe in turn (never together: each gets the whole machine)."""
    result: dict[str, Any] = {"concurrency": cfg.concurrency, "duration_s": cfg.duration}
    for name, probe in (
        ("mysql", mysql_ceiling),
        ("rabbitmq", rabbit_ceiling),
        ("redis", redis_ceiling),
    ):
        try:
            result[name] = await probe(cfg)
        except Exception as exc:  # a missing ceiling must not hide the system's figures
            result[name] = {"error": repr(exc)}
    return result
