"""Waiting until the system is quiet before a phase that must have the machine to itself.

A phase's audit ends when every order is final and applied by analytics, but the system may
still be working through what that phase left behind (notifications, relay marks, the saga's
later events): the cached-GET phase after a rung that fell behind once read 1,077 GET/s with
the saga on against 2,462 with it off, because the order service, the consumers and RabbitMQ
were still busy with the backlog.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from loadtool import cpu

__all__ = ["busy_cores", "wait_until_quiet"]


def busy_cores(usage: Mapping[str, Mapping[str, Any]], ignore: Collection[str]) -> float:
    """Cores the system's own processes used on average (the load generator and the other
    ``ignore``d components left out)."""
    return sum(
        float(row["cores"])
        for name, row in usage.items()
        if "pids" in row and name not in ignore and name != cpu.LOADGEN
    )


async def wait_until_quiet(
    components: Callable[[], Mapping[str, Sequence[int]]],
    *,
    ignore: Collection[str] = (),
    below_cores: float = 0.15,
    window: float = 1.0,
    timeout: float = 120.0,
) -> float | None:
    """Seconds until the system used fewer than ``below_cores`` cores over one ``window``;
    None when it never did within ``timeout``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = components()
        before = cpu.snapshot(found, time.monotonic())
        await asyncio.sleep(window)
        after = cpu.snapshot(found, time.monotonic())
        if busy_cores(cpu.cpu_delta(before, after, 0), ignore) < below_cores:
            return round(time.monotonic() - started, 2)
    return None
