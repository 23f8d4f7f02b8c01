"""A MariaDB outage longer than the whole retry budget parks nothing (DESIGN.md §4 rule 7).

The long suite holds the outage 15 minutes against the shipped tiers and attempts (budget
1+10+60+600 s = 11 min 11 s). The short suite cannot wait that long, so its equivalent makes the
budget small instead, explicitly and only here: tiers of 0.2 and 0.5 s with the shipped attempt
count (budget 1.7 s) for every consumer that needs the database, and an outage several times
that budget. A consumer that spent an attempt per failed try would park each message it holds
within 1.7 s; one that defers without spending attempts parks none.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from typing import Any

import httpx

from tests.e2e.system import RunningSystem
from tests.faults.copies import EventTap
from tests.faults.harness import SteadyLoad, partition, send_probe
from tests.faults.parking import (
    SHIPPED_ATTEMPTS,
    SHIPPED_RETRY_DELAYS,
    deferred_by_process,
    parked_counts,
    retry_budget,
)
from tests.faults.scenarios import Sizes, run_with_faults
from tests.faults.wiring import MYSQL, ORDER_DB, Fault, cut, proxy_to, wait_all_ready

__all__ = ["outage_longer_than_the_retry_budget"]


async def refused(host: str, port: int) -> bool:
    """True when a TCP connect to the database is refused: the outage as a client sees it."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except OSError:
        return True
    writer.close()
    return False


async def outage_longer_than_the_retry_budget(
    sizes: Sizes, *, retry_delays: str = SHIPPED_RETRY_DELAYS, real_fault: Fault | None = None
) -> None:
    """MariaDB refuses connections for ``sizes.outage`` s, longer than the retry budget of every
    consumer that needs it; then: nothing parked anywhere, nothing lost, nothing doubled."""
    delays = tuple(float(d) for d in retry_delays.split(","))
    budget = max(retry_budget(delays, n) for n in SHIPPED_ATTEMPTS.values())
    assert sizes.outage > budget, f"an outage of {sizes.outage} s is within the budget {budget} s"
    async with contextlib.AsyncExitStack() as stack:
        part = await stack.enter_async_context(partition())
        env = {**part.env(), "ORDER_FULFILMENT_RETRY_DELAYS": retry_delays}
        fault, db_port = real_fault, MYSQL[1]
        if fault is None:
            proxy = await stack.enter_async_context(proxy_to(MYSQL))
            db_port = proxy.port
            env = {
                **env,
                **part.env(database_port=proxy.port),
                "ORDER_DATABASE_URL": ORDER_DB.format(port=proxy.port),
            }
            fault = cut(proxy)
        system = RunningSystem(env=env, stop_timeout=45, retry_delays=retry_delays)
        # The saga's queue gets the same tiers: its retry queues are the run's to delete.
        system.topology = dataclasses.replace(system.topology, fulfilment_delays=delays)
        await stack.enter_async_context(system)
        tap = await stack.enter_async_context(EventTap(system))
        seen: dict[str, Any] = {"budget_seconds": budget, "outage_seconds": sizes.outage}

        async def inject(load: SteadyLoad, cycle: int) -> float:
            await load.wait_accepted(load.accepted_so_far + sizes.warmup_orders // 2, timeout=60)
            before = await deferred_by_process(system)
            async with fault(), httpx.AsyncClient(base_url=system.order_url, timeout=30) as client:
                started = time.monotonic()
                # Copies of real events arrive mid-outage: the analytics consumer cannot check
                # its inbox and must wait them out (the saga's own steps meet it as well).
                seen["copies_published_mid_outage"] = await tap.republish(50)
                checks, statuses = 0, Counter[int]()
                while time.monotonic() - started < sizes.outage:
                    # Held the whole time: every check of the database is refused.
                    assert await refused(MYSQL[0], db_port), "MariaDB answered mid-outage"
                    checks += 1
                    statuses[(await send_probe(client, load)).status_code] += 1
                    await asyncio.sleep(min(1.0, sizes.outage / 20))
                seen["refused_checks"] = checks
                seen["probe_statuses"] = dict(statuses)
                after = await deferred_by_process(system)
                seen["deferred_during_outage"] = {p: after[p] - before[p] for p in after}
            restored = time.monotonic()
            seen["ready_after_seconds"] = round(await wait_all_ready(system, timeout=180), 2)
            return restored

        await run_with_faults(
            "outage_longer_than_retry_budget", system, part, sizes, inject, extra=seen
        )
        assert seen["refused_checks"] > 0, "the outage never happened"
        assert seen["probe_statuses"].get(503) and set(seen["probe_statuses"]) <= {201, 503}, seen

        counts = await parked_counts(system)
        print(f"[fault:outage_longer_than_retry_budget] parked: {counts}")
        assert counts and not any(counts.values()), f"work was parked: {counts}"
        # The outage met work in flight in both consumers that need the database: their events
        # waited it out (deferred) instead of spending attempts.
        deferred = seen["deferred_during_outage"]
        assert deferred["analytics-consumer"] > 0 and deferred["order"] > 0, seen
