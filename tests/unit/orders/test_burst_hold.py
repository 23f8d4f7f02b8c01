"""When the relay holds events back: only while every recent half second pressed hard (many
POSTs in flight at a high rate), never past its bound, and a new hold only after the rows of
the last one went out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from common.observability import Metrics
from order_service.adapters.handoff import HandoffPipeline
from order_service.burst_hold import BurstHold, HoldMetrics, IntakeGauge
from tests.unit.orders.test_relay_handoff import event

WINDOW = 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Intake:
    """Drives a gauge: ``run(seconds, in_flight, per_second)`` replays that load."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.gauge = IntakeGauge(clock)
        self.in_flight = 0

    def hold_at(self, in_flight: int) -> None:
        while self.in_flight < in_flight:
            self.gauge.enter()
            self.in_flight += 1
        while self.in_flight > in_flight:
            self.gauge.leave()
            self.in_flight -= 1

    def run(self, seconds: float, in_flight: int, per_second: float, each: Callable[[], None]):
        """Advance in steps of 10 ms; requests finish and are replaced to give the rate."""
        self.hold_at(in_flight)
        owed = 0.0
        for _ in range(round(seconds / 0.01)):
            self.clock.now += 0.01
            owed += per_second * 0.01
            while owed >= 1 and in_flight:
                self.gauge.leave()  # one finishes, the next one starts at once
                self.gauge.enter()
                owed -= 1
            each()


def make(clock: Clock, **overrides) -> tuple[Intake, BurstHold, Metrics]:
    intake = Intake(clock)
    metrics = Metrics("test")
    options: dict[str, Any] = {
        "concurrency": 10,
        "min_rate": 350,
        "max_hold": 20.0,
        "window": WINDOW,
    }
    options.update(overrides)
    hold = BurstHold(intake.gauge, metrics=HoldMetrics(metrics), clock=clock, **options)
    return intake, hold, metrics


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.registry.get_sample_value(f"test_{name}", labels or {}) or 0.0


class Recorder:
    def __init__(self, hold: BurstHold, clear: Callable[[], bool] = lambda: True) -> None:
        self.hold, self.clear = hold, clear
        self.turns: list[tuple[float, bool]] = []

    def __call__(self) -> None:
        self.turns.append((self.hold._clock(), self.hold.holding(backlog_clear=self.clear())))

    def first_held(self) -> float | None:
        return next((t for t, held in self.turns if held), None)

    def held_any(self) -> bool:
        return any(held for _, held in self.turns)


def test_a_closed_loop_pressing_steadily_is_held_after_two_seconds():
    clock = Clock()
    intake, hold, metrics = make(clock)
    start = clock.now
    turns = Recorder(hold)
    intake.run(4.0, in_flight=14, per_second=500, each=turns)
    first = turns.first_held()
    assert first is not None and 2.0 <= first - start <= 2.6
    assert sample(metrics, "outbox_relay_holding") == 1


def test_a_closed_loop_on_a_slow_host_is_held_though_some_half_seconds_are_under_the_floor():
    clock = Clock()
    intake, hold, _ = make(clock)
    turns = Recorder(hold)
    for _ in range(4):  # 300 and 500 orders/s by turns: 400 on average
        intake.run(0.5, in_flight=14, per_second=300, each=turns)
        intake.run(0.5, in_flight=14, per_second=500, each=turns)
    assert turns.held_any()


@pytest.mark.parametrize(
    ("in_flight", "per_second"),
    [(30, 300), (6, 2000)],
    ids=["below the rate floor however many in flight", "few in flight however fast"],
)
def test_a_load_pressing_one_way_only_is_never_held(in_flight: int, per_second: float):
    clock = Clock()
    intake, hold, _ = make(clock)
    turns = Recorder(hold)
    intake.run(10.0, in_flight=in_flight, per_second=per_second, each=turns)
    assert not turns.held_any()


def test_one_slow_half_second_among_calm_ones_does_not_start_a_hold():
    clock = Clock()
    intake, hold, _ = make(clock)
    turns = Recorder(hold)
    for _ in range(5):  # 1.5 s calm, then one half second with 40 in flight: the mean is 13
        intake.run(1.5, in_flight=4, per_second=500, each=turns)
        intake.run(0.5, in_flight=40, per_second=500, each=turns)
    assert not turns.held_any()


def test_a_hold_ends_when_the_posts_in_flight_fall_below_half():
    clock = Clock()
    intake, hold, metrics = make(clock)
    turns = Recorder(hold)
    intake.run(3.0, in_flight=14, per_second=500, each=turns)
    assert hold.active
    intake.run(0.6, in_flight=6, per_second=500, each=turns)  # 6 >= 5: still pressing
    assert hold.active
    ended_from = clock.now
    intake.run(1.0, in_flight=3, per_second=500, each=turns)
    assert not hold.active
    released = next(t for t, held in turns.turns if t > ended_from and not held)
    assert released - ended_from <= WINDOW + 0.02
    assert sample(metrics, "outbox_relay_holds_total", {"reason": "pressure_fell"}) == 1
    assert sample(metrics, "outbox_relay_holding") == 0


def test_a_hold_never_lasts_past_its_bound_under_endless_pressure():
    clock = Clock()
    intake, hold, metrics = make(clock, max_hold=3.0)
    turns = Recorder(hold)
    intake.run(12.0, in_flight=14, per_second=500, each=turns)
    # Every stretch of held turns is at most the bound long (plus one 10 ms step).
    stretches, gaps, began, ended = [], [], None, None
    for t, held in turns.turns:
        if held and began is None:
            began = t
            if ended is not None:
                gaps.append(t - ended)
        elif not held and began is not None:
            stretches.append(t - began)
            began, ended = None, t
    assert len(stretches) >= 2
    assert max(stretches) <= 3.0 + 0.011
    # Between two holds, fresh windows: the released rows go out for two seconds at least.
    assert min(gaps) >= 2.0 - 0.011
    assert sample(metrics, "outbox_relay_holds_total", {"reason": "max_hold"}) >= 2
    assert sample(metrics, "outbox_relay_held_seconds_total") >= 6.0


def test_after_a_hold_ends_a_new_one_waits_for_fresh_windows_and_a_clear_backlog():
    clock = Clock()
    backlog = {"clear": True}
    intake, hold, _ = make(clock, max_hold=3.0)
    turns = Recorder(hold, clear=lambda: backlog["clear"])
    intake.run(5.2, in_flight=14, per_second=500, each=turns)  # held from ~2 s, bound at ~5 s
    assert not hold.active
    ended = clock.now
    backlog["clear"] = False  # rows of the ended hold still waiting
    intake.run(4.0, in_flight=14, per_second=500, each=turns)
    assert not hold.active
    backlog["clear"] = True
    intake.run(0.05, in_flight=14, per_second=500, each=turns)
    assert hold.active
    # Fresh windows: no hold in the first two seconds after the last one ended.
    assert not any(held for t, held in turns.turns if ended < t < ended + 2.0)


def test_a_bound_of_zero_turns_holding_off():
    clock = Clock()
    intake, hold, _ = make(clock, max_hold=0.0)
    turns = Recorder(hold)
    intake.run(6.0, in_flight=30, per_second=3000, each=turns)
    assert not hold.enabled and not turns.held_any()


def test_stopping_ends_a_hold_in_progress():
    clock = Clock()
    intake, hold, metrics = make(clock)
    intake.run(3.0, in_flight=14, per_second=500, each=Recorder(hold))
    assert hold.active
    hold.stop()
    assert not hold.active
    assert sample(metrics, "outbox_relay_holds_total", {"reason": "stopping"}) == 1


def test_the_gauge_averages_posts_in_flight_over_time_and_counts_those_finished():
    clock = Clock()
    gauge = IntakeGauge(clock)
    gauge.enter()
    clock.now += 1.0  # one in flight for a second
    gauge.enter()
    gauge.enter()
    clock.now += 1.0  # three for a second
    gauge.leave()
    window = gauge.sample()
    assert window.in_flight == 2.0
    assert window.per_second == 0.5
    clock.now += 2.0  # two in flight, none finishing
    window = gauge.sample()
    assert window.in_flight == 2.0 and window.per_second == 0.0


def test_the_handoff_notes_rows_that_fell_out_of_memory():
    async def publish(batch):
        return len(batch)

    handoff = HandoffPipeline(publish, lambda: None, batch_size=10, max_in_flight=1, max_rows=3)
    handoff.add([event(), event()])
    assert not handoff.overflowed
    handoff.add([event(), event()])
    assert handoff.overflowed and len(handoff.rows) == 3


def test_a_load_whose_pressure_a_hold_lifts_at_once_is_held_once_in_a_while_not_in_a_loop():
    """An open loop near the host's capacity: requests are slow while events flow, short while
    they are held. Each hold ends in its first window; the next waits 15 s, then 30 s ..."""
    clock = Clock()
    intake, hold, metrics = make(clock)
    turns = Recorder(hold)

    def step() -> None:
        turns()
        intake.hold_at(3 if hold.active else 16)

    intake.run(60.0, in_flight=16, per_second=400, each=step)
    starts = [
        t
        for (t, held), (_, before) in zip(turns.turns[1:], turns.turns[:-1], strict=True)
        if held and not before
    ]
    assert 2 <= len(starts) <= 3
    assert starts[1] - starts[0] >= 15.0
    assert sample(metrics, "outbox_relay_held_seconds_total") <= len(starts) * 1.01


def test_after_a_hold_that_lasted_the_quiet_time_starts_again_from_fifteen_seconds():
    clock = Clock()
    intake, hold, _ = make(clock)
    turns = Recorder(hold)
    lifted = {"on": True}

    def step() -> None:
        turns()
        if lifted["on"]:  # an open loop: holding makes its requests short at once
            intake.hold_at(3 if hold.active else 16)

    intake.run(3.0, in_flight=16, per_second=400, each=step)  # a short hold: quiet for 15 s
    lifted["on"] = False
    intake.run(17.0, in_flight=14, per_second=500, each=step)  # a closed loop: a lasting hold
    assert hold.active
    intake.run(1.0, in_flight=0, per_second=0, each=step)
    lifted["on"] = True
    short = clock.now
    intake.run(3.5, in_flight=16, per_second=400, each=step)  # another short hold: quiet 15 s
    assert not hold.active
    intake.run(16.0, in_flight=16, per_second=400, each=step)
    again = [t for t, held in turns.turns if t > short + 3.5 and held]
    assert again and again[0] - short <= 3.5 + 15.0 + 2.6
