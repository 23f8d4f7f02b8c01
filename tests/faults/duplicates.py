"""Real events published again and malformed messages mixed into the flow: duplicates change
nothing, poison is parked with its reason in each consumer's parking lot."""

from __future__ import annotations

import json
import time
from typing import Any

import aio_pika

from common.testing import wait_until
from tests.e2e.system import RABBITMQ_URL, RunningSystem
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
