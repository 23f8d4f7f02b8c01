"""Before the bench starts a system of its own, nothing else may consume the queues it uses.

Every system started from the Procfile works on the same queues of vhost ``orderflow``. A
``make run`` left running would take part of the benchmark's deliveries: its saga and
consumers work on orders its databases do not hold (one was parked in its dead-letter queue),
and the bench waits for orders it will never see (seen: a ``--quick`` run with ``make run`` up
counted 142 of 350 orders lost and was stopped by its timeout). So the bench refuses at once,
naming the queue and what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import aio_pika

from common.messaging.topology import TopologySettings
from common.settings import Env

__all__ = ["QueuesInUseError", "consumers", "procfile_queues", "refuse_if_consumed"]


class QueuesInUseError(RuntimeError):
    pass


def procfile_queues(
    process_env: Mapping[str, Mapping[str, str]], topology: TopologySettings | None = None
) -> dict[str, list[str]]:
    """Broker URL of each consuming Procfile process -> the work queues it consumes: each is
    checked with that process's own (least-privilege) broker user."""
    settings = topology or TopologySettings.from_env(Env())
    others = (settings.analytics_queue, settings.notifications_queue)
    owned = {
        "order": [q.name for q in settings.topology().queues if q.name not in others],
        "analytics-consumer": [settings.analytics_queue],
        "notifications": [settings.notifications_queue],
    }
    out: dict[str, list[str]] = {}
    for process, queues in owned.items():
        url = process_env.get(process, {}).get("RABBITMQ_URL")
        if url:
            out.setdefault(url, []).extend(queues)
    return out


async def consumers(queues_by_url: Mapping[str, list[str]]) -> dict[str, int]:
    """Consumers on each queue now; a queue that does not exist yet has none."""
    counts: dict[str, int] = {}
    for url, queues in queues_by_url.items():
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            for queue in queues:
                counts[queue] = 0
                # A passive declare of a missing queue closes its channel: one channel each.
                with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                    channel = await connection.channel()
                    declared = await channel.declare_queue(queue, passive=True)
                    counts[queue] = declared.declaration_result.consumer_count or 0
    return counts


async def refuse_if_consumed(queues_by_url: Mapping[str, list[str]]) -> None:
    busy = {q: n for q, n in (await consumers(queues_by_url)).items() if n}
    if busy:
        named = ", ".join(f"{q} ({n} consumer{'s' if n > 1 else ''})" for q, n in busy.items())
        raise QueuesInUseError(
            f"another system consumes the queues this benchmark's system would use: {named}. "
            "It would take the benchmark's orders. Stop it (make run: Ctrl-C) and run the "
            "benchmark again, or measure that system with --use-running."
        )
