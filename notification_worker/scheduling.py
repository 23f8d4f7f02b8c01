"""Which delay tier holds a not-yet-due notification (the shared rule in
common.messaging.delays; a notification is sent within half the smallest tier of its time)."""

from __future__ import annotations

from common.messaging.delays import DueNow, Hold, Step, next_step

__all__ = ["Hold", "SendNow", "Step", "next_step"]

SendNow = DueNow
