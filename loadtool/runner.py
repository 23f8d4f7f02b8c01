"""Drives POST /orders: closed loop at a fixed concurrency, or open loop at an offered rate.

One task per connection. With ``rate``, request i is due at ``start + i / rate`` and its
latency is also measured from that due time (``latency_from_schedule``), so a stalled server
cannot hide its queueing delay by slowing the generator down (coordinated omission).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from loadtool.client import HttpConnection, HttpError, parse_target
from loadtool.generator import OrderGenerator

__all__ = ["AcceptedOrder", "LoadConfig", "LoadResult", "run_load"]

_MAX_ERROR_SAMPLES = 20


@dataclass(frozen=True)
class LoadConfig:
    url: str = "http://127.0.0.1:8080"
    count: int | None = 1000
    concurrency: int = 16
    rate: float | None = None
    duration: float | None = None
    request_timeout: float = 30.0

    def validate(self) -> None:
        if self.count is None and self.duration is None:
            raise ValueError("give --count, --duration or both")
        if self.count is not None and self.count < 0:
            raise ValueError("--count must be >= 0")
        if self.concurrency < 1:
            raise ValueError("--concurrency must be >= 1")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("--rate must be > 0")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("--duration must be > 0")
        parse_target(self.url)


@dataclass(frozen=True)
class AcceptedOrder:
    order_id: str
    total_amount: Decimal
    currency: str
    # What the audit compares with analytics' fact; None when the sender did not record it.
    customer_id: str | None = None
    product_id: str | None = None
    quantity: int | None = None


@dataclass
class LoadResult:
    started_at: float = 0.0  # wall clock (time.time) at the first send
    elapsed: float = 0.0  # seconds from the first send to the last response
    sent: int = 0
    accepted: list[AcceptedOrder] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # accepted requests, seconds
    latency_from_schedule: list[float] = field(default_factory=list)  # rate mode only
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    connections_opened: int = 0
    offered_rate: float | None = None
    concurrency: int = 0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class _Order(msgspec.Struct):
    id: str


_decode_order = msgspec.json.Decoder(_Order).decode


async def run_load(
    config: LoadConfig,
    generator: OrderGenerator,
    *,
    on_progress: Callable[[LoadResult], None] | None = None,
    progress_interval: float = 0.25,
) -> LoadResult:
    config.validate()
    target = parse_target(config.url)
    result = LoadResult(offered_rate=config.rate, concurrency=config.concurrency)
    tickets = itertools.count()
    run_tag = uuid.uuid4().hex[:8]
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + config.duration if config.duration is not None else None
    result.started_at = time.time()
    static_headers = b"Content-Type: application/json\r\nAccept: application/json\r\n"

    async def worker() -> None:
        conn = HttpConnection(target)
        try:
            while True:
                i = next(tickets)
                if config.count is not None and i >= config.count:
                    return
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return
                due = now
                if config.rate is not None:
                    due = start + i / config.rate
                    if due > now:
                        if deadline is not None and due >= deadline:
                            return
                        await asyncio.sleep(due - now)
                # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
                due_pc = time.perf_counter() - (loop.time() - due)
                order = generator.next()
                headers = static_headers + b"X-Request-ID: lt-%s-%d\r\n" % (run_tag.encode(), i)
                if order.idempotency_key is not None:
                    headers += b"Idempotency-Key: %s\r\n" % order.idempotency_key.encode()
                result.sent += 1
                sent_at = time.perf_counter()
                try:
                    response = await conn.request(
                        "POST",
                        "/orders",
                        body=order.body,
                        headers=headers,
                        time_limit=config.request_timeout,
                    )
                except HttpError as exc:
                    _record_error(result, exc.kind, str(exc))
                    if exc.kind == "connect":
                        await asyncio.sleep(0.05)  # do not spin on a refused port
                    continue
                done = time.perf_counter()
                result.statuses[response.status] += 1
                if response.status != 201:
                    _record_error(
                        result, str(response.status), response.body[:300].decode("utf-8", "replace")
                    )
                    continue
                try:
                    order_id = _decode_order(response.body).id
                except msgspec.DecodeError:
                    _record_error(
                        result, "201-unparseable", response.body[:300].decode("utf-8", "replace")
                    )
                    continue
                result.accepted.append(
                    AcceptedOrder(
                        order_id,
                        order.total_amount,
                        order.currency,
                        order.customer_id,
                        order.product_id,
                        order.quantity,
                    )
                )
                result.latencies.append(done - sent_at)
                if config.rate is not None:
                    result.latency_from_schedule.append(max(0.0, done - due_pc))
        finally:
            result.connections_opened += conn.connects
            conn.close()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(progress_interval)
            result.elapsed = loop.time() - start
            if on_progress is not None:
                on_progress(result)

    progress_task = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(worker() for _ in range(config.concurrency)))
    finally:
        progress_task.cancel()
    result.elapsed = loop.time() - start
    if on_progress is not None:
        on_progress(result)
    return result


def _record_error(result: LoadResult, kind: str, detail: str) -> None:
    result.errors[kind] += 1
    if len(result.error_samples) < _MAX_ERROR_SAMPLES:
        result.error_samples.append(f"{kind}: {detail}")
