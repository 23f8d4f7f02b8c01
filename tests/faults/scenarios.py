"""The fault scenarios of issue 5, sized by the caller: the full suite (``-m faults``) runs them
long and against the real servers, the short versions (in ``make test``) small and through
proxies. Each one: steady load, the fault, recovery, then the audit (tests/faults/harness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aio_pika
import httpx

from common.testing import TcpProxy, wait_until
from tests.e2e.system import RABBITMQ_URL, RunningSystem
from tests.faults.harness import (
    Partition,
    SteadyLoad,
    audit_and_report,
    new_auditor,
    partition,
    send_probe,
)
from tests.faults.parking import SHIPPED_RETRY_DELAYS
from tests.faults.poison import (
    consumer_queues,
    park_summary,
    parked_messages,
    poison_messages,
    publish_poison,
)

__all__ = ["Sizes"]

MYSQL = ("127.0.0.1", 3306)
REDIS = ("127.0.0.1", 6379)
AMQP = ("127.0.0.1", 5672)
ORDER_DB = "mysql+aiomysql://order_svc:order_svc_local@127.0.0.1:{port}/order_db"

Fault = Callable[[], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Sizes:
    rate: float  # orders/s offered
    duration: float  # seconds of load
    outage: float  # seconds each fault lasts
    cycles: int = 1
    warmup_orders: int = 50  # accepted before the first fault


@asynccontextmanager
async def proxy_to(host_port: tuple[str, int]) -> AsyncIterator[TcpProxy]:
    proxy = await TcpProxy(*host_port).start()
    try:
        yield proxy
    finally:
        await proxy.close()


def cut(proxy: TcpProxy) -> Fault:
    @asynccontextmanager
    async def fault() -> AsyncIterator[None]:
        await proxy.cut()
        try:
            yield
        finally:
            await proxy.restore()

    return fault


async def _ready(client: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    try:
        response = await client.get(url + "/health/ready")
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


async def wait_all_ready(
    system: RunningSystem, *, broker: bool = False, timeout: float = 90
) -> float:
    """Seconds until every process is ready again (and, with ``broker``, the order service's
    relay is connected to RabbitMQ)."""
    started = time.monotonic()
    urls = [
        system.order_url,
        system.analytics_url,
        system.analytics_consumer_url,
        system.notifications_url,
    ]
    async with httpx.AsyncClient(timeout=2) as client:

        async def all_ready() -> bool:
            reports = [await _ready(client, u) for u in urls]
            if any(r is None for r in reports):
                return False
            order = reports[0] or {}
            return not broker or order.get("checks", {}).get("rabbitmq") == "up"

        await wait_until(all_ready, timeout=timeout, interval=0.1, message="every process ready")
    return time.monotonic() - started


async def _metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=2) as client:
        text = (await client.get(url + "/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _run_with_faults(
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
        await _run_with_faults("rabbitmq_restart", system, part, cycles, inject, extra=extra)
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

        await _run_with_faults(
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
                        return await _metric(system.order_url, "order_service_outbox_pending_rows")

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

            await _run_with_faults(
                "order_service_sigkill_backlog",
                system,
                part,
                sizes,
                inject,
                extra={"outbox_backlog_seen": backlogs},
            )


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
            await _run_with_faults(
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
            env["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
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

        await _run_with_faults(
            "redis_stopped", system, part, sizes, inject, extra={"reads_during_outage": reads_seen}
        )
        failed = [r for r in reads if r[1] != 200]
        assert reads and not failed, f"reads failed while Redis was down: {failed[:10]}"


# --- duplicates and poison ----------------------------------------------------------------------


async def duplicates_and_poison(sizes: Sizes) -> None:
    """Real events published a second time and malformed messages mixed into the flow:
    duplicates change nothing, poison is parked with its reason in each consumer's DLQ."""
    async with (
        partition() as part,
        RunningSystem(env=part.env(), retry_delays=SHIPPED_RETRY_DELAYS) as system,
    ):
        topology = system.topology.topology()
        connection = await aio_pika.connect_robust(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            tap = await channel.declare_queue(exclusive=True)
            await tap.bind(topology.exchange, routing_key="order.#")
            exchange = await channel.get_exchange(topology.exchange, ensure=False)
            poison = poison_messages()
            duplicated: list[str] = []
            counts: dict[str, int] = {"poison": len(poison)}

            async def inject(load: SteadyLoad, cycle: int) -> float:
                taken = 0
                while taken < sizes.warmup_orders:
                    message = await tap.get(no_ack=True, fail=False, timeout=5)
                    if message is None:
                        await load.wait_accepted(load.accepted_so_far + 1)
                        continue
                    taken += 1
                    for _ in range(2):  # each real event arrives three times in all
                        await exchange.publish(
                            aio_pika.Message(
                                message.body,
                                content_type=message.content_type,
                                message_id=message.message_id,
                                type=message.type,
                                headers=dict(message.headers or {}),
                                timestamp=message.timestamp,
                                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            ),
                            routing_key=message.routing_key or "order.created",
                            mandatory=True,
                        )
                    duplicated.append(str(message.message_id))
                await publish_poison(channel, topology.exchange, poison)
                counts["duplicated_events"] = len(duplicated)
                counts["extra_copies_published"] = 2 * len(duplicated)
                return time.monotonic()

            await _run_with_faults(
                "duplicates_and_poison",
                system,
                part,
                sizes,
                inject,
                extra=counts,
            )
            expected = {p.kind for p in poison}
            for spec in consumer_queues(system):
                parked: dict[str, dict[str, Any]] = {}

                async def all_parked(
                    dlq: str = spec.dlq, parked: dict[str, dict[str, Any]] = parked
                ) -> bool:
                    parked.update(park_summary(await parked_messages(channel, dlq)))
                    return expected <= set(parked)

                await wait_until(all_parked, timeout=30, interval=0.5, message=f"{spec.dlq}")
                print(f"[fault:duplicates_and_poison] {spec.dlq}: {json.dumps(parked)}")
                assert set(parked) == expected, set(parked) ^ expected
                assert all(v["reason"] and v["source"] == spec.name for v in parked.values())
                for name in (spec.name, *spec.retry_queues):
                    queue = await channel.declare_queue(name, passive=True)
                    assert queue.declaration_result.message_count == 0, name
