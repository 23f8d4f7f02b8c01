"""The fault scenarios of issue 5, sized by the caller: the full suite (``-m faults``) runs them
long and against the real servers, the short versions (in ``make test``) small and through
proxies. Each one: steady load, the fault, recovery, then the audit (tests/faults/harness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.testing import wait_until
from tests.e2e.system import RunningSystem
from tests.faults.harness import (
    Partition,
    SteadyLoad,
    audit_and_report,
    new_auditor,
    partition,
)
from tests.faults.parking import SHIPPED_RETRY_DELAYS
from tests.faults.wiring import AMQP, Fault, cut, metric, proxy_to, wait_all_ready

__all__ = [
    "Sizes",
    "broker_outage",
    "consumers_killed",
    "order_service_killed_with_backlog",
    "run_with_faults",
]


@dataclass(frozen=True)
class Sizes:
    rate: float  # orders/s offered
    duration: float  # seconds of load
    outage: float  # seconds each fault lasts
    cycles: int = 1
    warmup_orders: int = 50  # accepted before the first fault


async def run_with_faults(
    name: str,
    system: RunningSystem,
    part: Partition,
    sizes: Sizes,
    inject: Callable[[SteadyLoad, int], Any],
    *,
    extra: dict[str, Any] | None = None,
    worker_kills: int = 0,
    audit_timeout: float = 90.0,
) -> None:
    """Load in the background; ``inject(load, cycle)`` runs each fault and returns the time the
    fault was removed; then audit everything."""
    auditor = new_auditor(system, part)
    try:
        before = await auditor.summary()
        assert before is not None, "analytics summary unavailable before the run"
        assert before.total_orders == 0, f"the run's analytics database is not fresh: {before}"
        load = SteadyLoad(system.order_url, part, sizes.rate, sizes.duration).start()
        try:
            await load.wait_accepted(sizes.warmup_orders)
            recovered_at = None
            for cycle in range(sizes.cycles):
                recovered_at = await inject(load, cycle)
            result = await load.result()
        finally:
            await load.cancel()
        await audit_and_report(
            name,
            system,
            load,
            result,
            auditor,
            before,
            recovered_at=recovered_at,
            extra=extra,
            worker_kills=worker_kills,
            audit_timeout=audit_timeout,
        )
    finally:
        await auditor.aclose()


# --- RabbitMQ ---------------------------------------------------------------------------------


async def broker_outage(sizes: Sizes, faults: list[tuple[str, Fault]] | None = None) -> None:
    """RabbitMQ gone mid-load: the API keeps accepting (outbox), nothing lost after it returns.

    Without ``faults`` every process reaches the broker through one proxy that is cut;
    with them (the full suite), each named fault stops the real broker in turn.
    """
    async with contextlib.AsyncExitStack() as stack:
        part = await stack.enter_async_context(partition())
        env = part.env()
        if faults is None:
            proxy = await stack.enter_async_context(proxy_to(AMQP))
            env["RABBITMQ_URL"] = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
            faults = [("proxy_cut", cut(proxy))]
        system = await stack.enter_async_context(
            RunningSystem(env=env, stop_timeout=45, retry_delays=SHIPPED_RETRY_DELAYS)
        )
        recoveries: dict[str, float] = {}
        accepted_during: dict[str, int] = {}

        async def inject(load: SteadyLoad, cycle: int) -> float:
            label, fault = faults[cycle % len(faults)]
            await load.wait_accepted(load.accepted_so_far + sizes.warmup_orders // 2, timeout=60)
            async with fault():
                at_cut = load.accepted_so_far
                await asyncio.sleep(sizes.outage)  # the outage itself, not a synchronisation
                accepted_during[f"{label}#{cycle}"] = load.accepted_so_far - at_cut
            restored = time.monotonic()
            recoveries[f"{label}#{cycle}"] = round(await wait_all_ready(system, broker=True), 2)
            return restored

        cycles = Sizes(
            sizes.rate,
            sizes.duration,
            sizes.outage,
            max(sizes.cycles, len(faults)),
            sizes.warmup_orders,
        )
        extra = {"reconnect_seconds": recoveries, "accepted_during_outage": accepted_during}
        await run_with_faults("rabbitmq_restart", system, part, cycles, inject, extra=extra)
        assert all(n > 0 for n in accepted_during.values()), (
            f"the order API stopped accepting while the broker was down: {accepted_during}"
        )


# --- consumers and the order service killed -------------------------------------------------


async def consumers_killed(sizes: Sizes) -> None:
    """SIGKILL the analytics consumer and the notification worker mid-batch, then restart."""
    async with (
        partition() as part,
        RunningSystem(env=part.env(), retry_delays=SHIPPED_RETRY_DELAYS) as system,
    ):
        restarts: list[float] = []

        async def inject(load: SteadyLoad, cycle: int) -> float:
            await load.wait_accepted(sizes.warmup_orders * (cycle + 1))
            system.kill("analytics-consumer")
            system.kill("notifications")
            await asyncio.sleep(sizes.outage)
            started = time.monotonic()
            await asyncio.gather(system.start("analytics-consumer"), system.start("notifications"))
            restarts.append(round(time.monotonic() - started, 2))
            return started

        await run_with_faults(
            "consumers_sigkill",
            system,
            part,
            sizes,
            inject,
            extra={"restart_seconds": restarts},
            worker_kills=sizes.cycles,
        )


async def order_service_killed_with_backlog(sizes: Sizes) -> None:
    """The relay cannot reach the broker, so the outbox fills; the order service is killed -9
    with that backlog, restarted, and publishes all of it."""
    async with partition() as part, proxy_to(AMQP) as proxy:
        order_env = {"RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}/"}
        async with RunningSystem(
            env=part.env(),
            service_env={"order": order_env},
            retry_delays=SHIPPED_RETRY_DELAYS,
        ) as system:
            backlogs: list[float] = []

            async def inject(load: SteadyLoad, cycle: int) -> float:
                await load.wait_accepted(
                    load.accepted_so_far + sizes.warmup_orders // 2, timeout=60
                )
                await proxy.cut()
                try:

                    async def backlog() -> float:
                        return await metric(system.order_url, "order_service_outbox_pending_rows")

                    backlogs.append(
                        await wait_until(
                            backlog, timeout=30, interval=0.1, message="an outbox backlog"
                        )
                    )
                    await asyncio.sleep(sizes.outage)
                    system.kill("order")
                finally:
                    await proxy.restore()
                started = time.monotonic()
                await system.start("order")
                return started

            await run_with_faults(
                "order_service_sigkill_backlog",
                system,
                part,
                sizes,
                inject,
                extra={"outbox_backlog_seen": backlogs},
            )
