"""Scheduled orders: accepted start times, and the delay tier that holds a waiting order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from order_service.domain.scheduling import Hold, StartNow, next_step, schedule_error
from order_service.domain.validation import validate_new_order

TIERS = (0.25, 1.0, 10.0, 60.0, 600.0)
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


@pytest.mark.parametrize(
    ("remaining", "step"),
    [
        (3600.0, Hold(600.0)),
        (599.0, Hold(60.0)),
        (5.0, Hold(1.0)),
        (0.6, Hold(0.25)),
        (0.2, Hold(0.25)),
        (0.1, StartNow()),
        (-3.0, StartNow()),
    ],
)
def test_a_waiting_order_hops_through_the_largest_tier_not_past_its_time(remaining, step):
    assert next_step(remaining, TIERS) == step


def test_a_start_time_in_the_past_or_beyond_the_horizon_is_refused():
    assert schedule_error(NOW - timedelta(seconds=1), NOW, WEEK) == "must be in the future"
    assert "7 days" in (schedule_error(NOW + WEEK + timedelta(seconds=1), NOW, WEEK) or "")
    assert schedule_error(NOW + timedelta(hours=1), NOW, WEEK) is None


def test_scheduled_time_must_be_rfc3339_with_an_offset():
    base = {"customer_id": "c", "product_id": "p", "quantity": 1, "total_amount": "1.00"}
    new, errors = validate_new_order({**base, "scheduled_time": "2026-11-21T12:00:00Z"})
    assert errors == [] and new is not None and new.scheduled_time is not None
    _, errors = validate_new_order({**base, "scheduled_time": "2026-11-21T12:00:00"})
    assert [e["field"] for e in errors] == ["scheduled_time"]
    _, errors = validate_new_order({**base, "scheduled_time": "tomorrow"})
    assert [e["field"] for e in errors] == ["scheduled_time"]
