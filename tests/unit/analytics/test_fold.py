"""The version fold: an order moves to its newest version, whatever order its events arrive in."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from analytics_service.aggregation import OrderFact, fold

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
ORDER = uuid.uuid4()


def _version(version: int, status: str) -> OrderFact:
    return OrderFact(
        ORDER, uuid.uuid4(), "c1", "p1", 1, Decimal("5.00"), "USD", status, NOW, NOW, version
    )


def test_events_arriving_out_of_order_end_at_the_newest_version_and_older_ones_change_nothing():
    recorded = _version(2, "paid")
    confirmed, created = _version(3, "confirmed"), _version(1, "created")
    changes, moved = fold(
        {ORDER: [confirmed, created]}, {confirmed.event_id, created.event_id}, lambda _: recorded
    )
    assert [(c.after.order_version, c.before, c.effective) for c in changes] == [
        (1, recorded, False),
        (3, recorded, True),
    ]
    assert moved == {ORDER: confirmed}


def test_a_version_already_recorded_neither_changes_nor_moves_the_order():
    recorded = _version(2, "paid")
    again = dataclasses.replace(recorded, event_id=uuid.uuid4())
    changes, moved = fold({ORDER: [again]}, {again.event_id}, lambda _: recorded)
    assert [c.effective for c in changes] == [False]
    assert moved == {}


def test_an_order_first_seen_in_the_batch_changes_from_nothing_and_needs_no_update():
    created, paid = _version(1, "created"), _version(2, "paid")
    changes, moved = fold(
        {ORDER: [paid, created]}, {created.event_id, paid.event_id}, lambda _: None
    )
    assert [(c.after, c.before) for c in changes] == [(created, None), (paid, created)]
    assert moved == {}


def test_events_already_in_the_inbox_are_left_out_and_their_order_is_not_read():
    seen = _version(3, "confirmed")

    def recorded(order_id: uuid.UUID) -> OrderFact | None:
        raise AssertionError("an order with no new event is not read")

    assert fold({ORDER: [seen]}, set(), recorded) == ([], {})
