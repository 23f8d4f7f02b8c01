"""How late the event loop runs what is due: the wait every request and delivery adds on top of
its own work when one coroutine holds the loop (a long CPU stretch between two awaits).

A timer due every ``interval`` seconds records how late it fired. It is a plain loop callback,
not a task: it cannot stop with an error (rule 9 has nothing to supervise), and costs one
callback per interval.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Histogram

from common.observability import Metrics

__all__ = ["LAG_BUCKETS", "LoopLagProbe"]

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopLagProbe:
    def __init__(self, metrics: Metrics, *, interval: float = 0.1) -> None:
        self._interval = interval
        self.lag: Histogram = metrics.histogram(
            "event_loop_lag_seconds",
            "How late the event loop ran a timer that was due (time each request and delivery "
            "waits behind other work in this process)",
            buckets=LAG_BUCKETS,
        )
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        due = loop.time() + self._interval
        self._handle = loop.call_at(due, self._fired, loop, due)

    def _fired(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        self.lag.observe(max(0.0, loop.time() - due))
        self._schedule(loop)
