"""A randomized fault run: steady load (saga on, keyed and unkeyed orders) for a fixed time while
a seeded schedule injects faults from tests/faults/chaos_faults.py one after another; then
everything is healed and audited with the fault suite's audits (0 lost, 0 doubled in the
aggregates and at both receivers, every order in a final state), every process must be ready
again without a restart by hand, and nothing but the injected poison may be parked.

The seed (``CHAOS_SEED`` replays one) fixes the schedule: which faults, how long each lasts and
the gaps between them; the system's own timing still varies from run to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import time
from collections import Counter
from typing import Any

import aio_pika

from common.testing import wait_until
from tests.e2e.system import RunningSystem
from tests.faults.chaos_faults import Chaos, catalogue
from tests.faults.copies import EventTap
from tests.faults.harness import SteadyLoad, audit_and_report, new_auditor, partition
from tests.faults.parking import SHIPPED_RETRY_DELAYS, parked_counts
from tests.faults.poison import consumer_queues, parked_messages
from tests.faults.wiring import AMQP, MYSQL, ORDER_DB, REDIS, proxy_to, wait_all_ready

__all__ = ["chaos_seed", "run_chaos"]


def chaos_seed() -> int:
    value = os.environ.get("CHAOS_SEED")
    return int(value) if value else random.SystemRandom().randrange(2**32)


async def run_chaos(seconds: float, *, rate: float, seed: int, real: bool) -> None:
    faults = catalogue(real)
    print(
        f"\n[chaos] seed={seed} (replay: CHAOS_SEED={seed}) seconds={seconds} faults={list(faults)}"
    )
    schedule: list[dict[str, Any]] = []
    try:
        await _run(seconds, rate, random.Random(seed), faults, schedule)
    except BaseException:
        print(f"[chaos] FAILED with seed={seed} (replay: CHAOS_SEED={seed}); schedule so far:")
        print(json.dumps(schedule, default=str))
        raise


async def _run(
    seconds: float,
    rate: float,
    rng: random.Random,
    faults: dict[str, tuple[int, Any]],
    schedule: list[dict[str, Any]],
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        part = await stack.enter_async_context(partition())
        proxies = {
            "amqp": await stack.enter_async_context(proxy_to(AMQP)),
            "mysql": await stack.enter_async_context(proxy_to(MYSQL)),
            "redis": await stack.enter_async_context(proxy_to(REDIS)),
        }
        env = {
            **part.env(database_port=proxies["mysql"].port),
            "ORDER_DATABASE_URL": ORDER_DB.format(port=proxies["mysql"].port),
            "RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{proxies['amqp'].port}/",
            "REDIS_URL": part.redis_url(proxies["redis"].port),
        }
        system = await stack.enter_async_context(
            RunningSystem(env=env, stop_timeout=60, retry_delays=SHIPPED_RETRY_DELAYS)
        )
        tap = await stack.enter_async_context(EventTap(system))
        chaos = Chaos(system, proxies, tap, part.database, rng)
        names = list(faults)
        weights = [faults[n][0] for n in names]
        auditor = new_auditor(system, part)
        stack.push_async_callback(auditor.aclose)
        before = await auditor.summary()
        assert before is not None and before.total_orders == 0, before
        load = SteadyLoad(system.order_url, part, rate, seconds).start()
        try:
            await load.wait_accepted(int(rate * 2))
            end = time.monotonic() + seconds - 5
            while time.monotonic() < end:
                name = rng.choices(names, weights)[0]
                entry: dict[str, Any] = {"t": round(seconds - (end - time.monotonic()), 1)}
                entry["fault"] = name
                schedule.append(entry)
                entry.update(await faults[name][1](chaos))
                entry["ready_after"] = round(await wait_all_ready(system, broker=True), 2)
                await asyncio.sleep(rng.uniform(0.5, 3.0))  # the schedule's gap
            result = await load.result()
        finally:
            await load.cancel()
        # Healed: each fault heals itself; every process must be ready on its own.
        ready = round(await wait_all_ready(system, broker=True, timeout=120), 2)
        counts = Counter(e["fault"] for e in schedule)
        print(f"[chaos] injected {sum(counts.values())} faults: {dict(counts)}; ready={ready}s")
        print(f"[chaos] schedule: {json.dumps(schedule, default=str)}")
        await audit_and_report(
            "chaos",
            system,
            load,
            result,
            auditor,
            before,
            audit_timeout=240,
            worker_kills=chaos.worker_kills,
            extra={"faults": dict(counts), "worker_kills": chaos.worker_kills},
        )
        await _check_parked(system, chaos)


async def _check_parked(system: RunningSystem, chaos: Chaos) -> None:
    """Nothing but the injected poison is parked (each consumer of the event stream parked every
    kind of it); no outbox row is parked."""
    counts = await parked_counts(system)
    assert counts["outbox parked rows"] == 0, counts
    must_hold = {spec.dlq for spec in consumer_queues(system)} if chaos.poison_kinds else set()
    connection = await aio_pika.connect(system.admin_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for spec in system.topology.topology().queues:
            parked: list[aio_pika.abc.AbstractIncomingMessage] = []

            async def drained(dlq: str = spec.dlq, parked: list[Any] = parked) -> bool:
                parked.extend(await parked_messages(channel, dlq))
                kinds = {str((m.headers or {}).get("x-poison-kind")) for m in parked}
                return dlq not in must_hold or chaos.poison_kinds <= kinds

            await wait_until(drained, timeout=60, interval=1, message=f"poison in {spec.dlq}")
            others = [m.message_id for m in parked if m.message_id not in chaos.poison_ids]
            print(f"[chaos] {spec.dlq}: {len(parked)} parked, {len(others)} not poison")
            assert others == [], f"{spec.dlq} parked real work: {others[:10]}"
