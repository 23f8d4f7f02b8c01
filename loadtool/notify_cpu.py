"""CPU per event of the notification worker alone: publish N OrderCreated events to a private
work queue, run ``python -m notification_worker`` on it (log channel, info logs to /dev/null)
and read its CPU time from /proc until it has acked them all.

    .venv/bin/python -m loadtool.notify_cpu --events 5000 [--mode burst|trickle] [--rate 1000]

``burst`` publishes every event as fast as confirms allow (a backlog builds and batches fill
up); ``trickle`` publishes at ``--rate`` events/s (batches stay small, as under light load).
``--source DIR`` runs the worker from another checkout (to measure a version before a change);
``--profile FILE`` writes a cProfile of the worker (its CPU figures then include the profiler).
Needs the local RabbitMQ (guest) and Redis; leaves nothing behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import aio_pika
from redis.asyncio import Redis

from common.events import OrderCreatedV1, encode_envelope, new_envelope
from common.messaging.topology import TopologySettings, apply_topology

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def event_body() -> bytes:
    event = OrderCreatedV1(
        order_id=uuid.uuid4(),
        customer_id="cust-bench",
        product_id="prod-1",
        quantity=1,
        total_amount=Decimal("9.99"),
        currency="USD",
        status="created",
        created_at=datetime.now(UTC),
    )
    return encode_envelope(new_envelope(event, producer="bench", correlation_id="bench"))


def consumed(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("notification_worker_events_consumed_total{")
    )


async def publish(
    channel: aio_pika.abc.AbstractChannel, queue: str, count: int, rate: float
) -> None:
    """Confirmed publishes: at ``rate`` per second, or (rate 0) 200 in flight at a time."""

    async def one() -> None:
        await channel.default_exchange.publish(
            aio_pika.Message(
                body=event_body(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(uuid.uuid4()),
                type="OrderCreated",
            ),
            routing_key=queue,
        )

    if not rate:
        for start in range(0, count, 200):
            await asyncio.gather(*(one() for _ in range(min(200, count - start))))
        return
    started = time.monotonic()
    for i in range(count):
        await one()
        if (ahead := (i + 1) / rate - (time.monotonic() - started)) > 0:
            await asyncio.sleep(ahead)


async def main(args: argparse.Namespace) -> None:
    base = f"notify-cpu-{uuid.uuid4().hex[:8]}"
    queue = f"{base}.notifications.orders"
    port = 18000 + os.getpid() % 1000
    env = {
        **os.environ,
        "RABBITMQ_URL": args.rabbitmq_url,
        "REDIS_URL": args.redis_url,
        "ORDERS_EXCHANGE": f"{base}.orders",
        "NOTIFICATIONS_QUEUE": queue,
        "ANALYTICS_QUEUE": f"{base}.analytics.orders",
        "NOTIFY_REDIS_PREFIX": base,
        "NOTIFY_HTTP_PORT": str(port),
        "NOTIFY_CHANNELS": "log",
        "LOG_LEVEL": args.log_level,
    }
    if args.source:
        env["PYTHONPATH"] = args.source
    topology = TopologySettings(
        exchange=f"{base}.orders",
        analytics_queue=f"{base}.analytics.orders",
        notifications_queue=queue,
    )
    connection = await aio_pika.connect(args.rabbitmq_url)
    channel = await connection.channel(publisher_confirms=True)
    await apply_topology(channel, topology.topology().only(queue))
    profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        *profile,
        "-m",
        "notification_worker",
        env=env,
        cwd=args.source or None,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # started: consuming its (empty) queue
            with contextlib.suppress(Exception):
                declared = await channel.declare_queue(queue, passive=True)
                if declared.declaration_result.consumer_count:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not start consuming")
            await asyncio.sleep(0.1)
        cpu_before = cpu_seconds(worker.pid)
        wall_before = time.monotonic()
        await publish(channel, queue, args.events, args.rate if args.mode == "trickle" else 0)
        while consumed(port) < args.events:
            await asyncio.sleep(0.25)  # each /metrics scrape costs the worker ~4 ms of CPU
        wall = time.monotonic() - wall_before
        cpu = cpu_seconds(worker.pid) - cpu_before
        print(
            f"{args.mode}: {args.events} events in {wall:.2f} s ({args.events / wall:.0f}/s), "
            f"worker CPU {cpu:.2f} s = {cpu / args.events * 1000:.3f} ms/event"
        )
    finally:
        worker.terminate()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.wait(), 30)
        cleanup = await connection.channel()
        spec = topology.topology().queue(queue)
        for name in (spec.name, *spec.retry_queues, spec.dlq):
            with contextlib.suppress(Exception):
                await cleanup.queue_delete(name)
        with contextlib.suppress(Exception):
            await cleanup.exchange_delete(f"{base}.orders")
        await connection.close()
        redis = Redis.from_url(args.redis_url)
        keys = [k async for k in redis.scan_iter(match=f"{base}:*", count=1000)]
        for i in range(0, len(keys), 1000):
            await redis.delete(*keys[i : i + 1000])
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--mode", choices=("burst", "trickle"), default="burst")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--source", default="")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--profile", default="", help="write a cProfile of the worker here")
    parser.add_argument("--rabbitmq-url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    asyncio.run(main(parser.parse_args()))
