"""Holding a not-yet-due message in the delay tiers: pure, so the timing rules are unit-tested.

A due-later message hops through the tiers (queue-level TTL, so no message blocks another) and
is re-examined at every hop against the wall clock, so hop overheads never accumulate. Each hop
takes the largest tier not past the due time; when less than the smallest tier remains, it
rounds to the nearer of "now" and "one more smallest tier", so the message is handled within half
the smallest tier (plus one hop's broker latency) of its due time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DueNow", "Hold", "Step", "next_step"]


@dataclass(frozen=True)
class DueNow:
    pass


@dataclass(frozen=True)
class Hold:
    delay: float


Step = DueNow | Hold


def next_step(remaining: float, tiers: Sequence[float]) -> Step:
    """What to do with a message due in ``remaining`` seconds (negative: overdue)."""
    if not tiers:
        return DueNow()
    smallest = min(tiers)
    if remaining <= smallest / 2:
        return DueNow()
    fitting = [t for t in tiers if t <= remaining]
    return Hold(max(fitting) if fitting else smallest)
