"""The relay's handed-over rows: several batches await their confirms at once, a trickle joins
the next batch, confirmed rows of many batches are marked sent in one transaction, and a
recovery pass waits for held rows only when the claim could take them too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from order_service.adapters.handoff import PIPELINE_MIN_ROWS, HandoffPipeline, recover
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
    await handoff.flush()
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
    await handoff.flush()
    assert [len(b) for b in broker.batches] == [1, PIPELINE_MIN_ROWS - 1]


async def test_a_failed_batch_surfaces_its_error_to_the_relay() -> None:
    broker = SlowBroker()
    handoff = pipeline(broker)
    handoff.add(event() for _ in range(10))
    handoff.start()
    broker.fail = RuntimeError("not confirmed: the broker is away")
    broker.confirm.set()
    with pytest.raises(RuntimeError, match="broker is away"):
        await handoff.flush()


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
        marks.add(confirmed, datetime.now(UTC))
        await asyncio.sleep(0.005)
    await marks.settle()
    assert db.transactions == [["a", "b", "c", "d"]]


async def test_marks_the_database_refused_are_kept_and_marked_later() -> None:
    db = MarkingDatabase()
    marks = marks_on(db)
    db.down = True
    marks.add(["a"], datetime.now(UTC))
    with pytest.raises(ConnectionError):
        await marks.settle()
    assert marks.pending == 1 and db.transactions == []
    db.down = False
    await marks.settle()
    assert db.transactions == [["a"]] and marks.pending == 0


GRACE = timedelta(seconds=5)


class Claims:
    """The recovery claim: how often it ran and what was marked by then."""

    def __init__(self, db: MarkingDatabase | None = None) -> None:
        self.calls = 0
        self.marked_before: list[list[list[str]]] = []
        self._db = db

    async def claim_batch(self) -> int:
        self.calls += 1
        self.marked_before.append(list(self._db.transactions) if self._db else [])
        return 0


async def test_a_recovery_pass_does_not_wait_for_young_rows_in_flight() -> None:
    broker = SlowBroker()  # never confirms
    handoff = pipeline(broker)
    handoff.add(event() for _ in range(10))
    handoff.start()
    claims = Claims()
    marks = marks_on(MarkingDatabase())
    await asyncio.wait_for(
        recover(handoff, marks, claims.claim_batch, batch_size=100, grace=GRACE), 1.0
    )
    assert claims.calls == 1 and handoff.in_flight == 1
    handoff.cancel()


async def test_rows_in_flight_near_the_grace_period_are_confirmed_before_the_claim() -> None:
    broker = SlowBroker()
    handoff = pipeline(broker)
    handoff.add([event(age=timedelta(seconds=3))])
    handoff.start()
    handoff.add(event() for _ in range(5))  # young rows waiting behind the old batch
    claims = Claims()
    marks = marks_on(MarkingDatabase())
    task = asyncio.create_task(
        recover(handoff, marks, claims.claim_batch, batch_size=100, grace=GRACE)
    )
    await asyncio.sleep(0.05)
    assert claims.calls == 0  # still waiting for the confirm
    broker.confirm.set()
    await asyncio.wait_for(task, 1.0)
    assert claims.calls == 1 and handoff.in_flight == 0 and not handoff.rows
    assert handoff.oldest() is None


async def test_rows_awaiting_their_mark_near_the_grace_period_are_marked_before_the_claim() -> None:
    db = MarkingDatabase()
    marks = marks_on(db, linger=10.0)
    marks.add(["young"], datetime.now(UTC))
    claims = Claims(db)
    await recover(pipeline(SlowBroker()), marks, claims.claim_batch, batch_size=100, grace=GRACE)
    assert claims.marked_before == [[]] and marks.pending == 1  # young: left to its linger
    marks.add(["old"], datetime.now(UTC) - timedelta(seconds=3))
    # Marked at once: settling ends the 10 s linger instead of waiting it out.
    await asyncio.wait_for(
        recover(pipeline(SlowBroker()), marks, claims.claim_batch, batch_size=100, grace=GRACE),
        1.0,
    )
    assert claims.marked_before[1] == [["young", "old"]] and marks.oldest is None


async def test_on_stop_a_recovery_pass_publishes_and_marks_every_held_row_first() -> None:
    broker = SlowBroker()
    broker.confirm.set()
    handoff = pipeline(broker)
    handoff.add(event() for _ in range(3))
    db = MarkingDatabase()
    marks = marks_on(db, linger=10.0)
    marks.add(["confirmed"], datetime.now(UTC))
    claims = Claims(db)
    await recover(handoff, marks, claims.claim_batch, batch_size=100, grace=GRACE, everything=True)
    assert sum(len(b) for b in broker.batches) == 3 and claims.marked_before == [[["confirmed"]]]


async def test_a_recovery_pass_claims_until_a_batch_comes_back_short() -> None:
    counts = iter([100, 100, 7])
    calls = 0

    async def claim_batch() -> int:
        nonlocal calls
        calls += 1
        return next(counts)

    marks = marks_on(MarkingDatabase())
    await recover(pipeline(SlowBroker()), marks, claim_batch, batch_size=100, grace=GRACE)
    assert calls == 3


async def test_a_refused_mark_keeps_its_age_for_recovery() -> None:
    db = MarkingDatabase()
    marks = marks_on(db, linger=10.0)
    old = datetime.now(UTC) - timedelta(seconds=4)
    marks.add(["a"], old)
    db.down = True
    with pytest.raises(ConnectionError):
        await marks.settle()
    assert marks.oldest == old


async def test_rows_dropped_from_memory_stay_marked_until_a_pass_can_claim_them_all() -> None:
    async def claim_batch() -> int:
        return 0

    handoff = pipeline(SlowBroker())
    handoff.forget()  # e.g. a failed batch: its rows are in the outbox only
    await recover(handoff, marks_on(MarkingDatabase()), claim_batch, batch_size=100, grace=GRACE)
    assert handoff.overflowed  # younger than the grace period: the pass could not claim them
    handoff.dropped_at = datetime.now(UTC) - 2 * GRACE
    await recover(handoff, marks_on(MarkingDatabase()), claim_batch, batch_size=100, grace=GRACE)
    assert not handoff.overflowed
