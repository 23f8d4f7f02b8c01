"""Prunes the analytics inbox past the redelivery horizon, a bounded number of rows per run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from analytics_service.ports import InboxPruner
from common.observability import Metrics, get_logger

__all__ = ["InboxPruneMetrics", "InboxPruning"]

log = get_logger(__name__)


class InboxPruneMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.pruned = metrics.counter(
            "inbox_pruned_rows_total", "Inbox rows deleted past the retention"
        )
        self.failures = metrics.counter(
            "inbox_prune_failures_total", "Inbox prune runs that failed (retried next interval)"
        )
        self.last_success = metrics.gauge(
            "inbox_prune_last_success_timestamp_seconds",
            "When an inbox prune run last finished without error",
        )
        self.run_seconds = metrics.histogram(
            "inbox_prune_run_seconds", "Time of one inbox prune run"
        )


class InboxPruning:
    """Every ``interval`` deletes up to ``batch`` rows per statement, statement after statement
    while they come back full, at most ``max_batches`` per run: the cost of a run is bounded and
    the rate (batch * max_batches / interval) stays well above the inbox's write rate."""

    def __init__(
        self,
        store: InboxPruner,
        metrics: InboxPruneMetrics,
        *,
        consumer: str,
        retention: timedelta,
        interval: float,
        batch: int,
        max_batches: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._consumer = consumer
        self._retention = retention
        self._interval = interval
        self._batch = batch
        self._max_batches = max_batches
        self._clock = clock

    async def run_once(self) -> int:
        """One run; returns the rows deleted. Raises what the store raised."""
        started = time.perf_counter()
        cutoff = self._clock() - self._retention
        deleted = 0
        for _ in range(self._max_batches):
            n = await self._store.prune_inbox(self._consumer, cutoff, self._batch)
            deleted += n
            self._metrics.pruned.inc(n)
            if n < self._batch:
                break
        self._metrics.run_seconds.observe(time.perf_counter() - started)
        self._metrics.last_success.set_to_current_time()
        if deleted:
            log.info("inbox_pruned", rows=deleted, before=cutoff.isoformat())
        return deleted

    async def run(self) -> None:
        """Prune every ``interval`` until cancelled; supervised (common/supervision.py) like
        every long-running task, so a loop that dies is logged, restarted and alerted on."""
        while True:
            try:
                await self.run_once()
            except Exception as exc:
                # A database outage: nothing is lost by waiting for the next interval.
                self._metrics.failures.inc()
                log.warning("inbox_prune_failed", error=repr(exc))
            await asyncio.sleep(self._interval)
