"""The loop-lag probe records how long a timer that was due waited behind other work."""

from __future__ import annotations

import asyncio
import time

from common.loop_lag import LoopLagProbe
from common.observability import Metrics
from common.testing import unique_name, wait_until


def _count_at_least(probe: LoopLagProbe, seconds: float) -> float:
    """Observations of at least ``seconds`` (the histogram's buckets are cumulative)."""
    total = below = 0.0
    for metric in probe.lag.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                total = sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) < seconds:
                below = max(below, sample.value)
    return total - below


async def _observed(probe: LoopLagProbe, seconds: float, *, at_least: int) -> None:
    async def enough() -> bool:
        return _count_at_least(probe, seconds) >= at_least

    await wait_until(enough, timeout=2, interval=0.01, message=f"{at_least} lags >= {seconds}s")


async def test_a_coroutine_holding_the_loop_shows_as_lag():
    probe = LoopLagProbe(Metrics(unique_name("lag").replace("-", "_")), interval=0.01)
    probe.start()
    try:
        await _observed(probe, 0, at_least=1)
        time.sleep(0.15)  # noqa: ASYNC251 - holding the loop is the point
        await _observed(probe, 0.1, at_least=1)
    finally:
        probe.stop()


async def test_a_stopped_probe_records_nothing_more():
    probe = LoopLagProbe(Metrics(unique_name("lag").replace("-", "_")), interval=0.01)
    probe.start()
    await _observed(probe, 0, at_least=2)
    probe.stop()
    seen = _count_at_least(probe, 0)
    await asyncio.sleep(0.05)
    assert _count_at_least(probe, 0) == seen
