"""Which delay tier holds a not-yet-due notification: pure, so the timing rules are unit-tested.

A scheduled message hops through the retry tiers (queue-level TTL, so no message blocks another)
and is re-examined at every hop against the wall clock, so hop overheads never accumulate. Each
hop takes the largest tier not past the due time; the last hop, when less than the smallest tier
remains, rounds to the nearer of "send now" and "one more smallest tier", so the send lands
within half the smallest tier (plus one hop's broker latency) of the due time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Hold", "SendNow", "Step", "next_step"]


@dataclass(frozen=True)
class SendNow:
    pass


@dataclass(frozen=True)
class Hold:
    delay: float


Step = SendNow | Hold


def next_step(remaining: float, tiers: Sequence[float]) -> Step:
    """What to do with a notification due in ``remaining`` seconds (negative: overdue)."""
    if not tiers:
        return SendNow()
    smallest = min(tiers)
    if remaining <= smallest / 2:
        return SendNow()
    fitting = [t for t in tiers if t <= remaining]
    return Hold(max(fitting) if fitting else smallest)
