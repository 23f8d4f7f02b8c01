"""The relay's side of a hold (``BurstHold``): whether this turn's fresh rows wait, and the
wait while they do. Held rows stay pending in the outbox and in memory, and go out when the
pressure falls or the hold reaches its bound; recovery waits too, so it cannot publish them
meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from order_service.adapters.handoff import HandoffPipeline
from order_service.burst_hold import BurstHold

__all__ = ["BurstHold", "RelayHold"]

# A new hold starts only when the oldest row waiting is this young: rows released by the last
# hold go out first, so none waits through two holds.
_FRESH = timedelta(seconds=1.0)


class RelayHold:
    def __init__(
        self,
        hold: BurstHold | None,
        handoff: HandoffPipeline,
        wake: asyncio.Event,
        *,
        on_release: Callable[[], None],
    ) -> None:
        self._hold = hold
        self._handoff = handoff
        self._wake = wake
        self._on_release = on_release

    def holds(self, *, stopping: bool) -> bool:
        """Whether fresh rows wait this turn (never on stop). When a hold ends, ``on_release``
        runs: rows that fell out of memory during it wait in the outbox for recovery."""
        if self._hold is None or not self._hold.enabled:
            return False
        if stopping:  # everything is published on stop
            self._hold.stop()
            return False
        was_holding = self._hold.active
        waiting = self._handoff.waiting_since()
        clear = not self._handoff.overflowed and (
            waiting is None or datetime.now(UTC) - waiting < _FRESH
        )
        held = self._hold.holding(backlog_clear=clear)
        if was_holding and not held:
            self._on_release()
        return held

    async def wait(self) -> None:
        """Until the next commit or batch end, or the hold's next check, whichever is first."""
        assert self._hold is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._hold.seconds_to_next_check())
        self._wake.clear()
