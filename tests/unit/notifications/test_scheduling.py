"""Which tier holds a notification that is not due yet."""

from __future__ import annotations

import pytest

from notification_worker.scheduling import Hold, SendNow, next_step

TIERS = (1.0, 10.0, 60.0, 600.0)


@pytest.mark.parametrize(
    ("remaining", "expected"),
    [
        (-5.0, SendNow()),
        (0.0, SendNow()),
        (0.5, SendNow()),
        (0.51, Hold(1.0)),
        (1.0, Hold(1.0)),
        (9.99, Hold(1.0)),
        (10.0, Hold(10.0)),
        (599.0, Hold(60.0)),
        (3600.0, Hold(600.0)),
    ],
)
def test_the_largest_tier_not_past_the_due_time_holds_it(remaining, expected):
    assert next_step(remaining, TIERS) == expected


def test_a_schedule_of_an_hour_lands_within_half_the_smallest_tier():
    remaining = 3599.7
    hops = 0
    while isinstance(step := next_step(remaining, TIERS), Hold):
        remaining -= step.delay
        hops += 1
    assert abs(remaining) <= 0.5
    assert hops < 40


def test_the_tiers_need_not_be_sorted_and_none_means_send_now():
    assert next_step(12.0, (60.0, 1.0, 10.0)) == Hold(10.0)
    assert next_step(100.0, ()) == SendNow()
