"""Scheduled orders: which start times are accepted, and how a not-yet-due order waits.

A scheduled order waits in the scheduler queue's delay tiers (queue-level TTL, dead-lettered
back to the work queue), re-examined at every hop against the wall clock so hop overheads never
add up. Each hop takes the largest tier not past the due time; when less than the smallest tier
remains, it rounds to the nearer of "start now" and "one more smallest tier", so an order starts
within half the smallest tier (plus one hop's broker latency) of its time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Hold", "StartNow", "Step", "next_step", "schedule_error"]


@dataclass(frozen=True)
class StartNow:
    pass


@dataclass(frozen=True)
class Hold:
    delay: float


Step = StartNow | Hold


def next_step(remaining: float, tiers: Sequence[float]) -> Step:
    """What to do with an order due in ``remaining`` seconds (negative: overdue)."""
    if not tiers:
        return StartNow()
    smallest = min(tiers)
    if remaining <= smallest / 2:
        return StartNow()
    fitting = [t for t in tiers if t <= remaining]
    return Hold(max(fitting) if fitting else smallest)


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
