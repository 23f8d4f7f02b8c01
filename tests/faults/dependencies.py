"""The dependency outages of the fault suite: MariaDB and Redis unreachable mid-load (through a
proxy of the run's own, or the real server stopped by the full suite)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx

from tests.e2e.system import RunningSystem
from tests.faults.harness import SteadyLoad, partition, send_probe
from tests.faults.parking import SHIPPED_RETRY_DELAYS
from tests.faults.scenarios import Sizes, run_with_faults
from tests.faults.wiring import MYSQL, ORDER_DB, REDIS, Fault, cut, proxy_to

__all__ = ["database_unavailable", "redis_unavailable"]


# --- MariaDB ------------------------------------------------------------------------------------


async def database_unavailable(sizes: Sizes, real_fault: Fault | None = None) -> None:
    """MariaDB unreachable while orders keep arriving: 503 problem+json quickly (never a hang or
    a 500), then 201 again on its own; analytics applies everything after it returns."""
    async with contextlib.AsyncExitStack() as stack:
        part = await stack.enter_async_context(partition())
        env = part.env()
        fault = real_fault
        if fault is None:
            proxy = await stack.enter_async_context(proxy_to(MYSQL))
            env = {
                **part.env(database_port=proxy.port),
                "ORDER_DATABASE_URL": ORDER_DB.format(port=proxy.port),
            }
            fault = cut(proxy)
        system = await stack.enter_async_context(
            RunningSystem(env=env, stop_timeout=45, retry_delays=SHIPPED_RETRY_DELAYS)
        )
        probes: list[dict[str, Any]] = []
        probes_seen: dict[str, int] = {}

        async def inject(load: SteadyLoad, cycle: int) -> float:
            await load.wait_accepted(load.accepted_so_far + sizes.warmup_orders // 2, timeout=60)
            async with fault(), httpx.AsyncClient(base_url=system.order_url, timeout=30) as client:
                deadline = time.monotonic() + sizes.outage
                while time.monotonic() < deadline:  # probe the API while the database is down
                    started = time.monotonic()
                    response = await send_probe(client, load)
                    probes.append(
                        {
                            "status": response.status_code,
                            "seconds": round(time.monotonic() - started, 2),
                            "type": response.headers.get("content-type"),
                            "retry_after": response.headers.get("retry-after"),
                        }
                    )
                    await asyncio.sleep(0.25)
            for p in probes:
                probes_seen[str(p["status"])] = probes_seen.get(str(p["status"]), 0) + 1
            return time.monotonic()

        statuses = {p["status"] for p in probes}
        try:
            await run_with_faults(
                "mariadb_unavailable", system, part, sizes, inject, extra={"probes": probes_seen}
            )
        finally:
            statuses = {p["status"] for p in probes}
            print(f"[fault:mariadb_unavailable] probe answers: {json.dumps(probes[:40])}")
        unavailable = [p for p in probes if p["status"] == 503]
        assert unavailable, f"no 503 while the database was down: {probes[:10]}"
        assert statuses <= {201, 503}, (
            f"unexpected statuses while the database was down: {statuses}"
        )
        assert all(p["type"] == "application/problem+json" for p in unavailable), probes[:5]
        assert all(p["retry_after"] for p in unavailable), probes[:5]
        assert max(p["seconds"] for p in probes) < 12, f"the API hung: {probes}"


# --- Redis --------------------------------------------------------------------------------------


async def redis_unavailable(sizes: Sizes, real_fault: Fault | None = None) -> None:
    """Redis gone: order and analytics APIs answer from MySQL; notifications resume after it."""
    async with contextlib.AsyncExitStack() as stack:
        part = await stack.enter_async_context(partition())
        env = part.env()
        fault = real_fault
        if fault is None:
            proxy = await stack.enter_async_context(proxy_to(REDIS))
            env["REDIS_URL"] = part.redis_url(proxy.port)
            fault = cut(proxy)
        system = await stack.enter_async_context(
            RunningSystem(env=env, stop_timeout=45, retry_delays=SHIPPED_RETRY_DELAYS)
        )
        reads: list[tuple[str, int]] = []
        reads_seen: dict[str, int] = {}

        async def inject(load: SteadyLoad, cycle: int) -> float:
            async with httpx.AsyncClient(timeout=10) as client:
                page = await client.get(system.order_url + "/orders", params={"limit": 5})
                ids = [o["id"] for o in page.json()["items"]]
                assert ids
                async with fault():
                    deadline = time.monotonic() + sizes.outage
                    while time.monotonic() < deadline:
                        for oid in ids:
                            r = await client.get(f"{system.order_url}/orders/{oid}")
                            reads.append(("GET /orders/{id}", r.status_code))
                        r = await client.get(system.analytics_url + "/analytics/summary")
                        reads.append(("GET /analytics/summary", r.status_code))
                        r = await client.get(
                            system.analytics_url + "/analytics/top-products", params={"limit": 3}
                        )
                        reads.append(("GET /analytics/top-products", r.status_code))
                        await asyncio.sleep(0.2)
            for route, status in reads:
                key = f"{route} {status}"
                reads_seen[key] = reads_seen.get(key, 0) + 1
            return time.monotonic()

        await run_with_faults(
            "redis_stopped", system, part, sizes, inject, extra={"reads_during_outage": reads_seen}
        )
        failed = [r for r in reads if r[1] != 200]
        assert reads and not failed, f"reads failed while Redis was down: {failed[:10]}"
