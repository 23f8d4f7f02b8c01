"""Issue 13 items 4, 7 and 10a: a poison outbox row is parked alone while the rest flow, pruning
keeps pace, and a relay connection that cannot be used is closed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from common.messaging import publisher as publisher_module
from common.messaging.connection import connect_robust_forever
from common.messaging.topology import TopologySettings, apply_topology
from common.observability import Metrics
from common.testing import unique_name, wait_until
from common.utc import naive_utc
from order_service.adapters.outbox_relay import OutboxMetrics, OutboxRelay
from order_service.adapters.pruner import Pruner, PrunerMetrics
from order_service.adapters.tables import UNPUBLISHED, idempotency_keys, outbox
from order_service.container import build_engine
from order_service.outbox_cli import list_parked, main, purge_parked, replay_parked
from order_service.ports import OutboxEvent
from order_service.settings import OrderSettings

pytestmark = pytest.mark.integration

UNROUTABLE = "poison.unroutable"  # no queue is bound for it: the broker returns it every time


@pytest.fixture
async def engine(order_settings: OrderSettings) -> AsyncIterator[AsyncEngine]:
    engine = build_engine(order_settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def topology(amqp, cleanup_topology: TopologySettings) -> TopologySettings:
    channel = await amqp.channel()
    await apply_topology(channel, cleanup_topology.topology())
    await channel.close()
    return cleanup_topology


def _event(exchange: str, routing_key: str, occurred_at: datetime) -> OutboxEvent:
    event_id = uuid.uuid4()
    return OutboxEvent(
        event_id=event_id,
        aggregate_id=uuid.uuid4(),
        event_type="OrderCreated",
        exchange=exchange,
        routing_key=routing_key,
        payload=json.dumps({"event_id": str(event_id)}).encode(),
        headers={"correlation_id": "poison-test"},
        occurred_at=occurred_at,
    )


async def _insert(engine: AsyncEngine, events: Sequence[OutboxEvent], **extra: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            insert(outbox),
            [
                {
                    "event_id": str(e.event_id),
                    "aggregate_id": str(e.aggregate_id),
                    "event_type": e.event_type,
                    "exchange": e.exchange,
                    "routing_key": e.routing_key,
                    "payload": e.payload,
                    "headers": json.dumps(e.headers),
                    "occurred_at": naive_utc(e.occurred_at),
                    **extra,
                }
                for e in events
            ],
        )


async def _row(engine: AsyncEngine, event: OutboxEvent):
    async with engine.connect() as conn:
        return (
            await conn.execute(select(outbox).where(outbox.c.event_id == str(event.event_id)))
        ).one()


class Arrivals:
    """Message ids that reached a queue, drained on each look."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.ids: set[str] = set()

    async def has_all(self, events: Sequence[OutboxEvent]) -> bool:
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            self.ids.add(str(message.message_id))
        return all(str(e.event_id) in self.ids for e in events)


def _relay(engine: AsyncEngine, settings: OrderSettings, topology: TopologySettings, **kw):
    options = {
        "batch_size": 20,
        "poll_interval": 0.05,
        "recovery_grace": 0.2,
        "max_attempts": 3,
        "retry_base_seconds": 0.05,
        **kw,
    }
    return OutboxRelay(
        engine,
        rabbitmq_url=settings.rabbitmq_url,
        topology=topology.topology(),
        metrics=OutboxMetrics(Metrics(unique_name("relay").replace("-", "_"))),
        **options,
    )


async def test_an_unroutable_row_is_parked_after_its_attempts_while_200_others_flow_at_full_speed(
    engine, order_settings, topology, amqp
):
    exchange = topology.exchange
    old = datetime.now(UTC) - timedelta(minutes=1)
    poison = _event(exchange, UNROUTABLE, old)
    good = [_event(exchange, "order.created", old) for _ in range(200)]
    await _insert(engine, [poison])  # the lowest pending id: claimed first by every batch
    await _insert(engine, good)
    channel = await amqp.channel()
    arrivals = Arrivals(await channel.get_queue(topology.analytics_queue, ensure=False))
    relay = _relay(engine, order_settings, topology)
    relay.start()
    try:
        assert await relay.wait_ready(10)
        started = time.monotonic()
        # Ten batches of 20, each with the poison row in it: no backoff between them.
        await wait_until(lambda: arrivals.has_all(good), timeout=8, message="the 200 good rows")
        assert time.monotonic() - started < 8

        async def parked() -> bool:
            return (await _row(engine, poison)).parked_at is not None

        await wait_until(parked, timeout=10, message="the poison row parked")
        row = await _row(engine, poison)
        assert row.published_at == UNPUBLISHED
        assert row.attempts == 3
        assert "unroutable" in row.last_error
        assert relay._metrics.parked._value.get() == 1
        await relay.measure_backlog()
        assert relay._metrics.parked_rows._value.get() == 1
        assert relay._metrics.pending._value.get() == 0  # parked rows are not the backlog

        # The relay is not in backoff: rows committed now are published at once.
        fresh = [_event(exchange, "order.created", datetime.now(UTC)) for _ in range(5)]
        await _insert(engine, fresh)
        relay.handoff(fresh)
        await wait_until(lambda: arrivals.has_all(fresh), timeout=3, message="fresh rows")
        assert (await _row(engine, poison)).attempts == 3  # parked: not tried any more
    finally:
        await relay.stop()
        await channel.close()


async def test_a_handed_over_row_the_broker_returns_spends_one_attempt_and_stops_no_one(
    engine, order_settings, topology, amqp
):
    exchange = topology.exchange
    now = datetime.now(UTC)
    poison = _event(exchange, UNROUTABLE, now)
    good = [_event(exchange, "order.created", now) for _ in range(30)]
    await _insert(engine, [poison, *good])
    channel = await amqp.channel()
    arrivals = Arrivals(await channel.get_queue(topology.analytics_queue, ensure=False))
    relay = _relay(engine, order_settings, topology, recovery_grace=30.0, poll_interval=30.0)
    relay.start()
    try:
        assert await relay.wait_ready(10)
        relay.handoff([poison, *good[:10]])
        relay.handoff(good[10:])
        await wait_until(lambda: arrivals.has_all(good), timeout=3, message="handed-over rows")
        row = await _row(engine, poison)
        assert (row.attempts, row.published_at, row.parked_at) == (1, UNPUBLISHED, None)
        assert row.next_attempt_at is not None
    finally:
        await relay.stop()
        await channel.close()


async def test_parked_rows_are_listed_replayed_to_the_broker_and_purged(
    engine, order_settings, topology, amqp, capsys
):
    exchange = topology.exchange
    old = datetime.now(UTC) - timedelta(minutes=1)
    to_replay, to_purge = _event(exchange, UNROUTABLE, old), _event(exchange, "poison.other", old)
    parked_at = naive_utc(old)
    await _insert(engine, [to_replay, to_purge], attempts=3, parked_at=parked_at)

    listed = await list_parked(engine, exchange)
    assert [r["event_id"] for r in listed] == [str(to_replay.event_id), str(to_purge.event_id)]
    # The command line, as an operator runs it (its own event loop, hence the thread).
    assert await asyncio.to_thread(main, ["list"], order_settings.database_url, exchange) == 0
    assert str(to_replay.event_id) in capsys.readouterr().out

    # Whatever made it unroutable is fixed: a queue now takes its routing key.
    channel = await amqp.channel()
    queue = await channel.declare_queue(unique_name("poison-fixed"), auto_delete=True)
    await queue.bind(exchange, routing_key="poison.#")
    relay = _relay(engine, order_settings, topology)
    relay.start()
    try:
        assert await relay.wait_ready(10)
        assert await replay_parked(engine, exchange, [listed[0]["id"]]) == 1
        arrivals = Arrivals(queue)
        await wait_until(lambda: arrivals.has_all([to_replay]), timeout=5, message="replayed row")

        async def published() -> bool:
            return (await _row(engine, to_replay)).published_at != UNPUBLISHED

        await wait_until(published, timeout=5, message="replayed row marked sent")
        assert str(to_purge.event_id) not in arrivals.ids  # still parked
        assert await purge_parked(engine, exchange, None) == 1
        assert await list_parked(engine, exchange) == []
    finally:
        await relay.stop()
        await channel.close()


async def test_a_relay_connection_that_fails_after_connecting_is_closed_not_leaked(
    engine, order_settings, cleanup_topology, amqp, monkeypatch
):
    # The exchange exists with another type: declaring the topology fails after the connect.
    channel = await amqp.channel()
    await channel.declare_exchange(cleanup_topology.exchange, aio_pika.ExchangeType.DIRECT)
    await channel.close()
    opened: list[aio_pika.abc.AbstractRobustConnection] = []
    real_connect = connect_robust_forever

    async def recording_connect(url: str, **kwargs: object):
        connection = await real_connect(url, **kwargs)  # type: ignore[arg-type]
        opened.append(connection)
        return connection

    monkeypatch.setattr(publisher_module, "connect_robust_forever", recording_connect)
    relay = _relay(engine, order_settings, cleanup_topology)
    relay.start()
    try:

        async def retried() -> bool:
            return len(opened) >= 3

        await wait_until(retried, timeout=15, message="three connect attempts")
        earlier = opened[:2]

        async def earlier_closed() -> bool:
            return all(c.is_closed for c in earlier)

        # A failed attempt's close runs before the next attempt; on a loaded machine its
        # state may settle a moment later, never not at all.
        await wait_until(earlier_closed, timeout=5, message="the failed connections closed")
        assert not relay.connected
    finally:
        await relay.stop()
        for connection in opened:
            await connection.close()


async def test_pruning_removes_every_due_row_of_its_exchange_in_one_run_and_counts_them(
    engine, order_settings, topology
):
    exchange, other = topology.exchange, unique_name("other-exchange")
    long_ago = datetime.now(UTC) - timedelta(days=3)
    due = [_event(exchange, "order.created", long_ago) for _ in range(2500)]
    await _insert(engine, due, published_at=naive_utc(long_ago))
    kept = {
        "recent": _event(exchange, "order.created", datetime.now(UTC)),
        "pending": _event(exchange, "order.created", long_ago),
        "parked": _event(exchange, UNROUTABLE, long_ago),
        "other exchange": _event(other, "order.created", long_ago),
    }
    await _insert(engine, [kept["recent"]], published_at=naive_utc(datetime.now(UTC)))
    await _insert(engine, [kept["pending"]])
    await _insert(engine, [kept["parked"]], parked_at=naive_utc(long_ago))
    await _insert(engine, [kept["other exchange"]], published_at=naive_utc(long_ago))
    prefix = unique_name("prune")
    async with engine.begin() as conn:
        await conn.execute(
            insert(idempotency_keys),
            [
                {
                    "idem_key": f"{prefix}-{n}",
                    "request_hash": "h",
                    "status_code": 201,
                    "response_body": b"{}",
                    "resource_id": str(uuid.uuid4()),
                    "created_at": naive_utc(long_ago),
                    "expires_at": naive_utc(long_ago + timedelta(days=1, seconds=n)),
                }
                for n in range(1200)
            ]
            + [
                {
                    "idem_key": f"{prefix}-live",
                    "request_hash": "h",
                    "status_code": 201,
                    "response_body": b"{}",
                    "resource_id": str(uuid.uuid4()),
                    "created_at": naive_utc(datetime.now(UTC)),
                    "expires_at": naive_utc(datetime.now(UTC) + timedelta(days=1)),
                }
            ],
        )
    metrics = PrunerMetrics(Metrics(unique_name("pruner").replace("-", "_")))
    pruner = Pruner(
        engine,
        exchange=exchange,
        metrics=metrics,
        retention_seconds=86400,
        batch_size=500,
        pause_seconds=0.0,
    )
    result = await pruner.prune_once()

    assert result.outbox == 2500
    assert result.idempotency_keys >= 1200  # other tests' expired keys go too
    assert metrics.pruned.labels("outbox")._value.get() == 2500
    assert metrics.pruned.labels("idempotency_keys")._value.get() == result.idempotency_keys
    async with engine.connect() as conn:
        left = (
            await conn.execute(
                select(outbox.c.event_id).where(
                    outbox.c.event_id.in_([str(e.event_id) for e in [*due, *kept.values()]])
                )
            )
        ).scalars()
        keys = (
            await conn.execute(
                select(idempotency_keys.c.idem_key).where(
                    idempotency_keys.c.idem_key.like(f"{prefix}-%")
                )
            )
        ).scalars()
        assert set(left) == {str(e.event_id) for e in kept.values()}
        assert list(keys) == [f"{prefix}-live"]
    async with engine.begin() as conn:
        await conn.execute(
            outbox.delete().where(outbox.c.event_id.in_([str(e.event_id) for e in kept.values()]))
        )
