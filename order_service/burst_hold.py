"""When the relay holds committed events back: while POSTs arrive faster than the host can
both accept them and run everything downstream.

On a host that the API shares with the saga, the consumers, MariaDB and RabbitMQ, every event
published during a burst costs CPU that the next POSTs wait for: with everything running, two
cores accepted ~430-700 POSTs/s at 16 connections, and ~1,600-2,400/s when nothing downstream
ran (docs/benchmark.md). The outbox is durable, so the relay may publish later without losing
anything: while the API is saturated it holds fresh rows (they stay committed and pending in
the outbox), and publishes them when the pressure falls or the hold reaches its bound.

Saturated means both: many POSTs in flight on average in every half second of the last two, and
orders accepted at a high rate over those two seconds. In-flight alone does not tell a burst from a
load the host sustains: at 300 orders/s on a busy host a two-second average reached the 12 of a
closed loop of 16 connections. The rate floor keeps holds away from such loads, whose events must go
out at once. A hold makes requests short: once the clients stop pressing, the average falls to half
and the hold ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from common.observability import Metrics, get_logger

__all__ = ["BurstHold", "HoldMetrics", "IntakeGauge", "IntakeWindow"]

log = get_logger(__name__)

_FIRST_QUIET = 15.0
_LONGEST_QUIET = 60.0


@dataclass(frozen=True, slots=True)
class IntakeWindow:
    in_flight: float  # POSTs in flight, averaged over the window's time
    per_second: float  # POSTs finished per second


class IntakeGauge:
    """POSTs creating an order right now; ``sample`` averages them since the previous sample."""

    __slots__ = ("_area", "_at", "_clock", "_count", "_finished", "_since")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._count = 0
        self._finished = 0
        self._area = 0.0  # in-flight count integrated over time since ``_since``
        self._at = self._since = clock()

    def enter(self) -> None:
        self._advance()
        self._count += 1

    def leave(self) -> None:
        self._advance()
        self._count -= 1
        self._finished += 1

    def sample(self) -> IntakeWindow:
        now = self._advance()
        span = now - self._since
        window = (
            IntakeWindow(self._area / span, self._finished / span)
            if span > 0
            else IntakeWindow(float(self._count), 0.0)
        )
        self._area = 0.0
        self._finished = 0
        self._since = now
        return window

    def _advance(self) -> float:
        now = self._clock()
        self._area += self._count * (now - self._at)
        self._at = now
        return now


class HoldMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.holding = metrics.gauge(
            "outbox_relay_holding",
            "1 while the relay holds committed events back because the API is saturated",
        )
        self.holds = metrics.counter(
            "outbox_relay_holds_total",
            "Ended holds by why they ended: pressure_fell, max_hold (the bound), stopping",
            ("reason",),
        )
        self.held_seconds = metrics.counter(
            "outbox_relay_held_seconds_total", "Time the relay spent holding events back"
        )


class BurstHold:
    """Decides, each turn of the relay's loop, whether fresh rows wait.

    A hold starts when in each of the last ``start_windows`` windows POSTs in flight averaged
    at least ``concurrency``, over them POSTs were answered at ``min_rate`` per second or
    more, and nothing from an earlier hold is still waiting. It ends when one window's
    in-flight average falls below half of ``concurrency``, or after ``max_hold`` seconds
    whatever the pressure (the bound on how long an event waits for it). ``max_hold`` of 0
    turns holding off.
    """

    def __init__(
        self,
        gauge: IntakeGauge,
        *,
        concurrency: float,
        min_rate: float,
        max_hold: float,
        metrics: HoldMetrics | None = None,
        window: float = 0.5,
        start_windows: int = 4,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gauge = gauge
        self._concurrency = concurrency
        self._min_rate = min_rate
        self._max_hold = max_hold
        self._metrics = metrics
        self._window = window
        self._clock = clock
        self._window_end = clock() + window
        self._recent: deque[IntakeWindow] = deque(maxlen=start_windows)
        self._since: float | None = None
        # After a hold that the pressure left within its first windows (a load the host
        # sustains: holding made its requests short at once), none for this long; doubled each
        # time up to a minute, and back to the first after a hold that lasted.
        self._quiet_until = 0.0
        self._quiet = _FIRST_QUIET

    @property
    def enabled(self) -> bool:
        return self._max_hold > 0

    @property
    def active(self) -> bool:
        return self._since is not None

    def holding(self, *, backlog_clear: bool) -> bool:
        """Whether fresh rows wait this turn. ``backlog_clear``: no row of an earlier hold is
        still waiting (a new hold starts only then, so no row waits through two holds)."""
        if not self.enabled:
            return False
        now = self._clock()
        fresh = now >= self._window_end
        if fresh:
            self._recent.append(self._gauge.sample())
            self._window_end = now + self._window
        if self._since is not None:
            if fresh and self._recent[-1].in_flight < self._concurrency / 2:
                self._end(now, "pressure_fell")
            elif now - self._since >= self._max_hold:
                self._end(now, "max_hold")
        elif backlog_clear and now >= self._quiet_until and self._pressed():
            self._since = now
            if self._metrics is not None:
                self._metrics.holding.set(1)
            log.info(
                "relay_hold_started",
                posts_in_flight_avg=round(self._mean(lambda w: w.in_flight), 1),
                posts_per_second=round(self._mean(lambda w: w.per_second)),
            )
        return self._since is not None

    def seconds_to_next_check(self) -> float:
        """How long the relay may sleep while holding before it must look again."""
        now = self._clock()
        until = self._window_end - now
        if self._since is not None:
            until = min(until, self._since + self._max_hold - now)
        return max(0.0, until)

    def stop(self) -> None:
        """On stop everything is published: a hold in progress ends."""
        if self._since is not None:
            self._end(self._clock(), "stopping")

    def _pressed(self) -> bool:
        # In flight in every window, not on average: a closed loop presses steadily, while at a
        # load the host sustains one slow tenth of a second lifts a single window. The rate on
        # average: on a slow host a closed loop's half seconds finish 300-550 orders each.
        return (
            len(self._recent) == self._recent.maxlen
            and all(w.in_flight >= self._concurrency for w in self._recent)
            and self._mean(lambda w: w.per_second) >= self._min_rate
        )

    def _mean(self, value: Callable[[IntakeWindow], float]) -> float:
        return sum(value(w) for w in self._recent) / len(self._recent)

    def _end(self, now: float, reason: str) -> None:
        assert self._since is not None
        held = now - self._since
        self._since = None
        if reason == "pressure_fell" and held <= 2 * self._window + 0.05:
            self._quiet_until = now + self._quiet
            self._quiet = min(self._quiet * 2, _LONGEST_QUIET)
        else:
            self._quiet = _FIRST_QUIET
        last = self._recent[-1].in_flight if self._recent else 0.0
        # A new hold needs windows of its own, all after this one: the released rows go out
        # for two seconds at least.
        self._recent.clear()
        self._gauge.sample()
        self._window_end = now + self._window
        if self._metrics is not None:
            self._metrics.holding.set(0)
            self._metrics.holds.labels(reason).inc()
            self._metrics.held_seconds.inc(held)
        log.info(
            "relay_hold_ended",
            reason=reason,
            held_seconds=round(held, 3),
            posts_in_flight_avg=round(last, 1),
        )
