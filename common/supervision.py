"""Supervised long-running tasks (DESIGN.md §4 rule 9).

A task that stops unexpectedly (raises, or returns while nobody asked it to stop) is logged with
its error, restarted with exponential backoff, counted, and reported down, in readiness and in
the ``<service>_task_up`` gauge, from that stop until it runs healthy again. A task that has never
failed counts as up in the gauge while it starts (a consumer waiting for the broker is not a
failure); readiness (``ready``) asks more: running now and, for a consumer, consuming.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from common.observability import Metrics, get_logger

__all__ = ["Supervisor", "TaskMetrics"]

log = get_logger(__name__)

# What a stop body may take beyond its drain: cancelling its consumer (5 s at most), closing
# the ack batcher and its channels (5 s at most each).
STOP_BODY_MARGIN = 15.0

Body = Callable[[], Awaitable[object]]
Probe = Callable[[], bool]
Check = Callable[[], Awaitable[bool]]


class TaskMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.up: Gauge = metrics.gauge(
            "task_up",
            "1 while a supervised long-running task runs; 0 from an unexpected stop until it "
            "runs healthy again",
            ("task",),
        )
        self.restarts: Counter = metrics.counter(
            "task_restarts_total",
            "Unexpected stops of a supervised long-running task (each is restarted with backoff)",
            ("task",),
        )


@dataclass
class _Task:
    name: str
    body: Body
    healthy: Probe | None
    stop: Body | None
    runner: asyncio.Task[None] | None = None
    down: bool = False
    restarted_at: float = 0.0
    last_error: str = ""


class Supervisor:
    """Runs named tasks, restarting each one that stops unexpectedly.

    ``healthy`` (optional) tells when a restarted task works again (a consumer: it consumes);
    without it, a restarted task counts as up once it has run ``settle`` seconds without failing.
    ``stop`` (optional) asks a task to finish gracefully before it is cancelled.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        settle: float = 10.0,
        task_metrics: TaskMetrics | None = None,
    ) -> None:
        # Several supervisors in one process (stopped at different times) share the metrics.
        self._metrics = task_metrics or TaskMetrics(metrics)
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._settle = settle
        self._tasks: dict[str, _Task] = {}
        self._stopping = asyncio.Event()

    def add(
        self,
        name: str,
        body: Body,
        *,
        healthy: Probe | None = None,
        stop: Body | None = None,
    ) -> None:
        if name in self._tasks:
            raise ValueError(f"a task named {name!r} is already supervised")
        self._tasks[name] = _Task(name, body, healthy, stop)
        self._metrics.up.labels(name).set_function(lambda: 1.0 if self.is_up(name) else 0.0)
        self._metrics.restarts.labels(name)

    @property
    def task_metrics(self) -> TaskMetrics:
        return self._metrics

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tasks)

    def start(self) -> None:
        for task in self._tasks.values():
            if task.runner is None:
                task.runner = asyncio.create_task(
                    self._supervise(task), name=f"supervise-{task.name}"
                )

    def is_up(self, name: str) -> bool:
        task = self._tasks[name]
        if task.down and task.runner is not None and not task.runner.done():
            recovered = (
                task.healthy()
                if task.healthy is not None
                else time.monotonic() - task.restarted_at >= self._settle
            )
            if recovered:
                task.down = False
                log.info("task_recovered", task=name)
        return not task.down

    def ready(self, name: str) -> bool:
        """What readiness asks of a task: up, running now and, for one with ``healthy`` (a
        consumer: started on the broker), healthy now."""
        task = self._tasks[name]
        running = task.runner is not None and not task.runner.done()
        if not running or not self.is_up(name):
            return False
        return task.healthy is None or task.healthy()

    def down(self) -> dict[str, str]:
        """name -> last error, for every task down now."""
        return {n: t.last_error for n, t in self._tasks.items() if not self.is_up(n)}

    def checks(self) -> dict[str, Check]:
        """One readiness check per task, named after it (``ready``)."""

        def check(name: str) -> Check:
            async def up() -> bool:
                return self.ready(name)

            return up

        return {name: check(name) for name in self._tasks}

    async def stop(self, timeout: float = 30.0) -> None:
        """Ask every task to finish (``stop``), then cancel what is still running."""
        self._stopping.set()
        for task in self._tasks.values():
            if task.stop is not None:
                try:
                    # A stop body bounds its own drain by ``timeout`` and then still cancels its
                    # consumer, flushes its held acks and closes its channels: cutting it off at
                    # the same ``timeout`` would skip exactly those acks (redelivery, not loss,
                    # but work done twice). The margin only ends a stop body that hangs.
                    await asyncio.wait_for(task.stop(), timeout + STOP_BODY_MARGIN)
                except Exception as exc:
                    log.warning("task_stop_failed", task=task.name, error=repr(exc))
        runners = [t.runner for t in self._tasks.values() if t.runner is not None]
        # A task without a stop body has nothing to finish, nor has a consumer not consuming
        # once its stop body returned (drained, or still waiting for the broker): cancel them
        # now, not after the grace period (a periodic gauge would hold every shutdown 5 s, a
        # consumer waiting for the broker a SIGTERM during an outage).
        for task in self._tasks.values():
            idle = task.stop is None or (task.healthy is not None and not task.healthy())
            if idle and task.runner is not None:
                task.runner.cancel()
        if runners:
            _, pending = await asyncio.wait(runners, timeout=5.0)
            for runner in pending:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)

    async def _supervise(self, task: _Task) -> None:
        backoff = self._initial_backoff
        while not self._stopping.is_set():
            started = time.monotonic()
            failure: Exception | None = None
            try:
                await task.body()
                error = "the task returned without being asked to stop"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure, error = exc, repr(exc)
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= max(self._settle, self._max_backoff):
                backoff = self._initial_backoff  # it ran well for a while: a fresh failure
            task.down = True
            task.last_error = error[:500]
            self._metrics.restarts.labels(task.name).inc()
            log.error(
                "task_stopped_unexpectedly",
                task=task.name,
                error=error,
                restart_in=backoff,
                exc_info=failure,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, self._max_backoff)
            task.restarted_at = time.monotonic()
            log.info("task_restarting", task=task.name)
