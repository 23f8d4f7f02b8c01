"""Supervised long-running tasks: an unexpected stop logs, restarts with backoff, shows in
readiness and in the task_up gauge (DESIGN.md §4 rule 9)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import pytest
from structlog.testing import capture_logs

from common.observability import Metrics
from common.supervision import Supervisor
from common.testing import wait_until


async def _true(value: bool) -> bool:
    return value


def gauge(metrics: Metrics, task: str) -> float | None:
    return metrics.registry.get_sample_value("t_task_up", {"task": task})


def restarts(metrics: Metrics, task: str) -> float:
    return metrics.registry.get_sample_value("t_task_restarts_total", {"task": task}) or 0.0


async def test_a_task_that_fails_at_start_is_logged_restarted_with_backoff_and_reported_down():
    metrics = Metrics("t")
    supervisor = Supervisor(metrics, initial_backoff=0.01, max_backoff=0.05)
    starts: list[float] = []
    loop = asyncio.get_running_loop()

    async def consume() -> None:
        starts.append(loop.time())
        raise RuntimeError("ACCESS_REFUSED queue 'orders.fulfilment.retry.2s'")

    supervisor.add("consumer:orders.fulfilment", consume, healthy=lambda: False)
    checks = supervisor.checks()
    with capture_logs() as logs:
        supervisor.start()
        try:
            await wait_until(lambda: _true(len(starts) >= 4), timeout=5, message="4 starts")
            assert await checks["consumer:orders.fulfilment"]() is False
            assert gauge(metrics, "consumer:orders.fulfilment") == 0.0
            assert restarts(metrics, "consumer:orders.fulfilment") >= 3
            assert "ACCESS_REFUSED" in supervisor.down()["consumer:orders.fulfilment"]
        finally:
            await supervisor.stop()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[1] > gaps[0] * 1.5, gaps  # the backoff grows
    failures = [e for e in logs if e["event"] == "task_stopped_unexpectedly"]
    assert failures and failures[0]["task"] == "consumer:orders.fulfilment"
    assert "ACCESS_REFUSED" in failures[0]["error"]


async def test_a_restarted_task_is_up_again_once_it_reports_healthy():
    metrics = Metrics("t")
    supervisor = Supervisor(metrics, initial_backoff=0.01)
    attempts: list[int] = []
    consuming = asyncio.Event()
    release = asyncio.Event()

    async def consume() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("channel closed")
        consuming.set()
        await release.wait()

    supervisor.add("consumer:q", consume, healthy=consuming.is_set, stop=_setter(release))
    supervisor.start()
    try:
        await wait_until(lambda: _true(consuming.is_set()), timeout=5, message="consuming")
        assert supervisor.is_up("consumer:q")
        assert gauge(metrics, "consumer:q") == 1.0
        assert restarts(metrics, "consumer:q") == 2
    finally:
        await supervisor.stop()
    assert len(attempts) == 3  # a graceful stop is not restarted


async def test_a_task_that_returns_on_its_own_is_an_unexpected_stop():
    metrics = Metrics("t")
    supervisor = Supervisor(metrics, initial_backoff=0.01, settle=60)
    runs: list[int] = []

    async def relay() -> None:
        runs.append(1)

    supervisor.add("outbox-relay", relay)
    supervisor.start()
    try:
        await wait_until(lambda: _true(len(runs) >= 2), timeout=5, message="a restart")
        assert not supervisor.is_up("outbox-relay")
    finally:
        await supervisor.stop()


async def test_a_task_that_has_not_failed_counts_as_up_while_it_starts():
    supervisor = Supervisor(Metrics("t"))
    never = asyncio.Event()
    supervisor.add("consumer:q", never.wait, healthy=lambda: False)
    supervisor.start()
    try:
        assert supervisor.is_up("consumer:q")  # waiting for the broker is not a failure
    finally:
        await supervisor.stop()


def test_two_tasks_with_one_name_are_refused():
    supervisor = Supervisor(Metrics("t"))
    supervisor.add("a", asyncio.Event().wait)
    with pytest.raises(ValueError, match="already supervised"):
        supervisor.add("a", asyncio.Event().wait)


def _setter(event: asyncio.Event):
    async def stop() -> None:
        event.set()

    return stop


async def test_stop_cancels_a_task_without_a_stop_body_at_once():
    supervisor = Supervisor(Metrics("stopfast"))

    async def forever() -> None:
        while True:
            await asyncio.sleep(60)

    supervisor.add("gauge", forever)
    supervisor.start()
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - started < 1.0


async def test_stop_cancels_a_consumer_still_waiting_for_the_broker_at_once():
    supervisor = Supervisor(Metrics("stopwaiting"))
    broker = asyncio.Event()  # never up
    drained: list[bool] = []

    async def drain() -> None:
        drained.append(True)

    supervisor.add("consumer:q", broker.wait, healthy=broker.is_set, stop=drain)
    supervisor.start()
    await asyncio.sleep(0)
    started = time.monotonic()
    await supervisor.stop()
    assert drained == [True]
    assert time.monotonic() - started < 1.0


async def test_a_stop_body_that_drains_for_its_whole_timeout_still_flushes_its_acks():
    supervisor = Supervisor(Metrics("stopflush"))
    consuming = asyncio.Event()
    flushed: list[bool] = []

    async def consume() -> None:
        consuming.set()
        await asyncio.Event().wait()

    async def stop_body() -> None:
        # As the consumer runner does: its drain waits up to the timeout, then it settles.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 0.2)
        await asyncio.sleep(0.05)  # cancel the consumer, close the ack batcher
        flushed.append(True)

    supervisor.add("consumer:q", consume, healthy=consuming.is_set, stop=stop_body)
    supervisor.start()
    await asyncio.wait_for(consuming.wait(), 2)
    await supervisor.stop(timeout=0.2)
    assert flushed == [True], "the stop body was cut off before its acks went out"
