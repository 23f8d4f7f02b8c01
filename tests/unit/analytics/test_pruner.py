"""The inbox pruner: past the retention only, bounded per run, keeps pace, survives outages."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from analytics_service.ports import StoreUnavailableError
from analytics_service.pruner import InboxPruneMetrics, InboxPruning
from analytics_service.settings import AnalyticsSettings
from common.observability import Metrics
from common.testing import wait_until

NOW = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


class FakeInbox:
    def __init__(self, received: list[datetime]) -> None:
        self.rows = sorted(received)
        self.statements: list[int] = []
        self.down = False

    async def prune_inbox(self, consumer: str, before: datetime, limit: int) -> int:
        if self.down:
            raise StoreUnavailableError("connection refused")
        old = [r for r in self.rows if r < before][:limit]
        self.rows = [r for r in self.rows if r not in old]
        self.statements.append(len(old))
        return len(old)


def _pruning(inbox: FakeInbox, metrics: Metrics, *, batch: int = 10, max_batches: int = 3):
    return InboxPruning(
        inbox,
        InboxPruneMetrics(metrics),
        consumer="analytics",
        retention=timedelta(days=7),
        interval=0.01,
        batch=batch,
        max_batches=max_batches,
        clock=lambda: NOW,
    )


def _received(days_ago: float, count: int) -> list[datetime]:
    return [NOW - timedelta(days=days_ago, seconds=i) for i in range(count)]


async def test_only_rows_past_the_retention_are_pruned_and_counted():
    inbox, metrics = FakeInbox(_received(8, 25) + _received(6, 5)), Metrics("t")
    assert await _pruning(inbox, metrics).run_once() == 25
    assert len(inbox.rows) == 5 and all(r > NOW - timedelta(days=7) for r in inbox.rows)
    assert metrics.registry.get_sample_value("t_inbox_pruned_rows_total") == 25
    assert inbox.statements == [10, 10, 5]


async def test_a_run_deletes_at_most_its_batches_and_the_next_run_goes_on():
    inbox = FakeInbox(_received(30, 100))
    pruning = _pruning(inbox, Metrics("t"), batch=10, max_batches=3)
    assert await pruning.run_once() == 30
    assert inbox.statements == [10, 10, 10]
    assert await pruning.run_once() == 30
    assert len(inbox.rows) == 40


async def test_pruning_keeps_pace_with_the_default_write_rate():
    s = AnalyticsSettings()
    capacity = s.inbox_prune_batch * s.inbox_prune_max_batches / s.inbox_prune_interval_seconds
    # The goal of issue 11: 1,200 orders/s with fulfilment off, three events per order.
    assert capacity >= 2 * 1200 * 3


async def test_a_database_outage_is_counted_and_the_task_keeps_running():
    inbox, metrics = FakeInbox(_received(8, 5)), Metrics("t")
    inbox.down = True
    pruning = _pruning(inbox, metrics)
    with pytest.raises(StoreUnavailableError):
        await pruning.run_once()
    task = asyncio.create_task(pruning.run())
    try:

        async def failed_twice() -> bool:
            return (metrics.registry.get_sample_value("t_inbox_prune_failures_total") or 0) >= 2

        await wait_until(failed_twice, timeout=2, interval=0.01, message="two failed runs")
        assert not task.done()
        inbox.down = False

        async def pruned() -> bool:
            return not inbox.rows

        await wait_until(pruned, timeout=2, interval=0.01, message="pruned after the outage")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_the_inbox_pruner_of_the_consumer_is_a_supervised_task():
    """DESIGN.md rule 9: it is restarted when it dies, and readiness and the alerts see it."""
    from analytics_service.consumer import AnalyticsConsumer
    from analytics_service.settings import AnalyticsSettings

    consumer = AnalyticsConsumer(AnalyticsSettings(), Metrics("t"))
    try:
        assert consumer.pruner_task in consumer.supervisor.names
        assert consumer.supervisor._tasks[consumer.pruner_task].body == consumer.pruning.run
    finally:
        await consumer.adapters.close()
