"""Pure latency statistics: percentiles by the nearest-rank method, no numpy, no I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["LatencySummary", "percentile", "rate", "summarize"]


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 for an empty one).

    Nearest rank always returns an observed value, so p100 is the max and p99 of 100 samples is
    the 99th smallest, which is what people read a p99 as.
    """
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    n = len(sorted_values)
    if n == 0:
        return 0.0
    rank = max(1, math.ceil(pct / 100 * n))
    return float(sorted_values[rank - 1])


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds; ``count`` samples."""

    count: int
    mean_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(seconds: Iterable[float]) -> LatencySummary:
    """Summary of latencies given in seconds, reported in milliseconds."""
    values = sorted(seconds)
    if not values:
        return LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    ms = 1000.0
    return LatencySummary(
        count=len(values),
        mean_ms=sum(values) / len(values) * ms,
        p50_ms=percentile(values, 50) * ms,
        p95_ms=percentile(values, 95) * ms,
        p99_ms=percentile(values, 99) * ms,
        max_ms=values[-1] * ms,
        min_ms=values[0] * ms,
    )


def rate(count: int, seconds: float) -> float:
    """Events per second, 0 when no time passed (never a division by zero)."""
    return count / seconds if seconds > 0 else 0.0
