"""Scheduled orders: which start times are accepted, and how a not-yet-due order waits.

A scheduled order waits in the scheduler queue's delay tiers by the shared rule in
common.messaging.delays, so it starts within half the smallest tier of its time.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from common.messaging.delays import DueNow, Hold, Step, next_step

__all__ = [
    "Hold",
    "StartNow",
    "Step",
    "UnacceptableStartTimeError",
    "next_step",
    "schedule_error",
]


StartNow = DueNow


class UnacceptableStartTimeError(ValueError):
    """A new order's ``scheduled_time`` is in the past or beyond the scheduling horizon; the
    message says which (a field error of ``scheduled_time``)."""

    field = "scheduled_time"


def schedule_error(scheduled: datetime, now: datetime, horizon: timedelta) -> str | None:
    """Why ``scheduled`` is not an acceptable start time, or None if it is."""
    if scheduled.tzinfo is None:
        return "must include a timezone offset (RFC 3339)"
    if scheduled <= now:
        return "must be in the future"
    if scheduled - now > horizon:
        return f"must be at most {_human(horizon)} ahead"
    return None


def _human(horizon: timedelta) -> str:
    seconds = int(horizon.total_seconds())
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day" + ("s" if days != 1 else "")
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds} seconds"
