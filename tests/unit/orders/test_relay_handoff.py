"""The relay's handed-over rows: several batches await their confirms at once, a trickle joins
the next batch, and confirmed rows of many batches are marked sent in one transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from order_service.adapters.handoff import PIPELINE_MIN_ROWS, HandoffPipeline
from order_service.adapters.outbox_marks import SentMarks
from order_service.ports import OutboxEvent


def event(age: timedelta = timedelta(0)) -> OutboxEvent:
    return OutboxEvent(
        event_id=uuid.uuid4(),
        aggregate_id=uuid.uuid4(),
        event_type="OrderCreated",
        exchange="orders",
        routing_key="order.created",
        payload=b"{}",
        headers={},
        occurred_at=datetime.now(UTC) - age,
    )


class SlowBroker:
    """Publishes whose confirms arrive only when the test says so."""

    def __init__(self) -> None:
        self.batches: list[list[OutboxEvent]] = []
        self.confirm = asyncio.Event()
        self.fail: Exception | None = None

    async def publish(self, batch: list[OutboxEvent]) -> int:
        self.batches.append(batch)
        await self.confirm.wait()
        if self.fail is not None:
            raise self.fail
        return len(batch)


def pipeline(broker: SlowBroker, *, batch_size: int = 100, in_flight: int = 4) -> HandoffPipeline:
    return HandoffPipeline(
        broker.publish,
        lambda: None,
        batch_size=batch_size,
        max_in_flight=in_flight,
        max_rows=10_000,
    )


async def test_a_backlog_is_published_as_several_batches_awaiting_confirms_at_once() -> None:
    broker = SlowBroker()
    handoff = pipeline(broker)
    handoff.add(event() for _ in range(450))
    handoff.start()
    await asyncio.sleep(0)
    assert [len(b) for b in broker.batches] == [100, 100, 100, 100]
    assert handoff.in_flight == 4 and len(handoff.rows) == 50  # every slot taken
    broker.confirm.set()
    await handoff.wait()
    handoff.start()
    await handoff.wait()
    assert [len(b) for b in broker.batches][4:] == [50] and not handoff.rows


async def test_a_trickle_waits_for_the_batch_in_flight_and_joins_the_next() -> None:
    broker = SlowBroker()
    handoff = pipeline(broker)
    handoff.add([event()])
    handoff.start()
    handoff.add(event() for _ in range(PIPELINE_MIN_ROWS - 1))
    handoff.start()
    await asyncio.sleep(0)
    assert [len(b) for b in broker.batches] == [1]
    broker.confirm.set()
    await handoff.wait()
    handoff.start()
    await handoff.wait()
    assert [len(b) for b in broker.batches] == [1, PIPELINE_MIN_ROWS - 1]


async def test_a_failed_batch_surfaces_its_error_to_the_relay() -> None:
    broker = SlowBroker()
    handoff = pipeline(broker)
    handoff.add(event() for _ in range(10))
    handoff.start()
    broker.fail = RuntimeError("not confirmed: the broker is away")
    broker.confirm.set()
    with pytest.raises(RuntimeError, match="broker is away"):
        await handoff.wait()


async def test_on_stop_every_waiting_row_is_published() -> None:
    broker = SlowBroker()
    broker.confirm.set()
    handoff = pipeline(broker, in_flight=1)
    handoff.add(event() for _ in range(250))
    await handoff.flush()
    assert sum(len(b) for b in broker.batches) == 250 and not handoff.rows


def test_rows_waiting_past_the_grace_period_are_left_to_recovery() -> None:
    handoff = pipeline(SlowBroker())
    handoff.add([event(age=timedelta(seconds=1))])
    handoff.drop_older_than(timedelta(seconds=5))
    assert len(handoff.rows) == 1
    handoff.add([event()])
    handoff.rows.appendleft(event(age=timedelta(seconds=6)))
    handoff.drop_older_than(timedelta(seconds=5))
    assert not handoff.rows


class MarkingDatabase:
    """Counts the mark transactions and the ids each one marks."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self.down = False

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[list[str]]:
        if self.down:
            raise ConnectionError("MySQL is away")
        marked: list[str] = []
        yield marked
        self.transactions.append(marked)

    async def mark_sent(self, conn: list[str], where: Any) -> None:
        conn.extend(str(v) for v in where.right.value)


def marks_on(db: MarkingDatabase, linger: float = 0.01) -> SentMarks:
    return SentMarks(cast(Any, db), cast(Any, db), linger=linger)


async def test_confirmed_rows_of_several_batches_are_marked_in_one_transaction() -> None:
    db = MarkingDatabase()
    marks = marks_on(db, linger=0.1)
    for confirmed in (["a", "b"], ["c"], ["d"]):  # batches confirmed a few ms apart
        marks.add(confirmed)
        await asyncio.sleep(0.005)
    await marks.settle()
    assert db.transactions == [["a", "b", "c", "d"]]


async def test_marks_the_database_refused_are_kept_and_marked_later() -> None:
    db = MarkingDatabase()
    marks = marks_on(db)
    db.down = True
    marks.add(["a"])
    with pytest.raises(ConnectionError):
        await marks.settle()
    assert marks.pending == 1 and db.transactions == []
    db.down = False
    await marks.settle()
    assert db.transactions == [["a"]] and marks.pending == 0
