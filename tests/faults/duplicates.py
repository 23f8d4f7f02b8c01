"""Real events published again and malformed messages mixed into the flow: duplicates change
nothing, poison is parked with its reason in each consumer's parking lot."""

from __future__ import annotations

import json
import time
from typing import Any

from common.testing import wait_until
from tests.e2e.system import RunningSystem
from tests.faults.copies import EventTap
from tests.faults.harness import SteadyLoad, partition
from tests.faults.parking import SHIPPED_RETRY_DELAYS
from tests.faults.poison import (
    consumer_queues,
    park_summary,
    parked_messages,
    poison_messages,
    publish_poison,
)
from tests.faults.scenarios import Sizes, run_with_faults

__all__ = ["duplicates_and_poison"]


# --- duplicates and poison ----------------------------------------------------------------------


async def duplicates_and_poison(sizes: Sizes) -> None:
    """Real events published a second time and malformed messages mixed into the flow:
    duplicates change nothing, poison is parked with its reason in each consumer's DLQ."""
    async with (
        partition() as part,
        RunningSystem(env=part.env(), retry_delays=SHIPPED_RETRY_DELAYS) as system,
    ):
        topology = system.topology.topology()
        async with EventTap(system) as tap:
            channel = await tap.usable_channel()
            poison = poison_messages()
            counts: dict[str, int] = {"poison": len(poison)}

            async def inject(load: SteadyLoad, cycle: int) -> float:
                taken = 0
                while taken < sizes.warmup_orders:
                    # Each real event arrives three times in all.
                    got = await tap.republish(sizes.warmup_orders - taken, copies=2)
                    if got == 0:
                        await load.wait_accepted(load.accepted_so_far + 1)
                    taken += got
                await publish_poison(channel, topology.exchange, poison)
                counts["duplicated_events"] = len(tap.republished)
                counts["extra_copies_published"] = 2 * len(tap.republished)
                return time.monotonic()

            await run_with_faults(
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
