"""Reads counters from a Prometheus /metrics page and samples them over time (consumer rates)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

__all__ = ["CounterSampler", "parse_counters", "sum_counter"]


def parse_counters(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for every sample line (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.rpartition(" ")
        if not key:
            continue
        try:
            values[key] = float(rest)
        except ValueError:
            continue
    return values


def sum_counter(samples: Mapping[str, float], name: str, label_filter: str = "") -> float:
    """Sum of every series of ``name`` whose label text contains ``label_filter``."""
    total = 0.0
    for key, value in samples.items():
        base, _, labels = key.partition("{")
        if base == name and label_filter in labels:
            total += value
    return total


@dataclass
class CounterSampler:
    """Samples one counter every ``interval`` seconds while running; rates come out after."""

    url: str
    name: str
    label_filter: str = ""
    interval: float = 0.5
    points: list[tuple[float, float]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def read(self, client: httpx.AsyncClient) -> float | None:
        try:
            response = await client.get(self.url)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        return sum_counter(parse_counters(response.text), self.name, self.label_filter)

    async def _loop(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                value = await self.read(client)
                if value is not None:
                    self.points.append((time.monotonic(), value))
                await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def total(self) -> float:
        return self.points[-1][1] - self.points[0][1] if len(self.points) > 1 else 0.0

    def active_rate(self) -> float:
        """Mean rate between the first and the last sample where the counter moved."""
        moving = [
            i for i in range(1, len(self.points)) if self.points[i][1] > self.points[i - 1][1]
        ]
        if not moving:
            return 0.0
        first, last = moving[0] - 1, moving[-1]
        dt = self.points[last][0] - self.points[first][0]
        dv = self.points[last][1] - self.points[first][1]
        return dv / dt if dt > 0 else 0.0

    def peak_rate(self, window: float = 2.0) -> float:
        """Highest rate over any ``window``-second stretch (what it does when it has work)."""
        best = 0.0
        j = 0
        for i in range(1, len(self.points)):
            while self.points[i][0] - self.points[j][0] > window and j < i - 1:
                j += 1
            dt = self.points[i][0] - self.points[j][0]
            if dt >= window * 0.75:
                best = max(best, (self.points[i][1] - self.points[j][1]) / dt)
        return best
