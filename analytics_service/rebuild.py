"""`python -m analytics_service rebuild`: recompute every aggregate from the facts."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from analytics_service.adapters.database import build_engine
from analytics_service.adapters.rebuilder import MySqlAggregateRebuilder
from analytics_service.aggregation import Difference
from analytics_service.ports import StoreConflictError
from analytics_service.settings import AnalyticsSettings

__all__ = ["rebuild", "report"]


async def rebuild(settings: AnalyticsSettings, *, attempts: int = 5) -> list[Difference]:
    engine = build_engine(
        settings.database_url, pool_size=1, connect_timeout=settings.db_connect_timeout
    )
    try:
        rebuilder = MySqlAggregateRebuilder(engine)
        for attempt in range(1, attempts + 1):
            try:
                return await rebuilder.rebuild()
            except StoreConflictError:
                # A consumer's batch deadlocked with us; it retries too, so one of us wins.
                if attempt == attempts:
                    raise
                await asyncio.sleep(0.1 * attempt)
        raise AssertionError("unreachable")
    finally:
        await engine.dispose()


def report(differences: list[Difference], out: TextIO = sys.stdout) -> None:
    if not differences:
        print("analytics_service: aggregates match the facts; nothing corrected", file=out)
        return
    for d in differences:
        print(f"corrected {d.describe()}", file=out)
    print(f"analytics_service: corrected {len(differences)} aggregate row(s)", file=out)
