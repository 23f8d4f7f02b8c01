"""The shipped retry settings, the retry budget they give, and what a run parked: every parking
lot of its topology and the order service's parked outbox rows.

DESIGN.md §4 rule 7: an outage delays work and never spends attempts, so even an outage longer
than the whole retry budget parks nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import aio_pika
import aiomysql
import httpx

from analytics_service.settings import AnalyticsSettings
from common.messaging.topology import DEFAULT_RETRY_DELAYS
from notification_worker.settings import NotificationSettings
from order_service.settings import OrderSettings
from tests.e2e.system import RunningSystem
from tests.support.analytics_db import HOST, PORT, ROOT_PASSWORD, ROOT_USER

__all__ = [
    "SHIPPED_ATTEMPTS",
    "SHIPPED_RETRY_DELAYS",
    "deferred_by_process",
    "parked_counts",
    "retry_budget",
]

SHIPPED_RETRY_DELAYS = ",".join(f"{d:g}" for d in DEFAULT_RETRY_DELAYS)


# The attempts each consumer gets by default, before it parks a message that keeps failing.
SHIPPED_ATTEMPTS = {
    "analytics": AnalyticsSettings.max_attempts,
    "notifications": NotificationSettings.max_attempts,
    "fulfilment": OrderSettings.fulfilment_max_attempts,
}


def retry_budget(delays: Sequence[float], attempts: int) -> float:
    """Seconds from a message's first failure to its parking, if every attempt failed: the
    consumer retries after attempts 1 .. attempts-1, each time in the next tier (the last tier
    repeats)."""
    return sum(delays[min(a, len(delays)) - 1] for a in range(1, attempts))


async def parked_counts(system: RunningSystem) -> dict[str, int]:
    """Messages in every parking lot of the run's topology, and its parked outbox rows."""
    counts: dict[str, int] = {}
    connection = await aio_pika.connect(system.admin_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for spec in system.topology.topology().queues:
            queue = await channel.declare_queue(spec.dlq, passive=True)
            counts[spec.dlq] = int(queue.declaration_result.message_count or 0)
    conn = await aiomysql.connect(
        host=HOST, port=PORT, user=ROOT_USER, password=ROOT_PASSWORD, autocommit=True
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT COUNT(*) FROM order_db.outbox"
                " WHERE exchange = %s AND parked_at IS NOT NULL",
                (system.topology.exchange,),
            )
            (counts["outbox parked rows"],) = await cur.fetchone()
    finally:
        conn.close()
    return counts


async def deferred_by_process(system: RunningSystem) -> dict[str, float]:
    """Events each consumer process deferred because a dependency was down (no attempt spent):
    the proof that an outage met work in flight."""
    urls = {
        "order": system.order_url,
        "analytics-consumer": system.analytics_consumer_url,
        "notifications": system.notifications_url,
    }
    out: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for process, url in urls.items():
            out[process] = 0.0
            for line in (await client.get(url + "/metrics")).text.splitlines():
                name = line.split("{", 1)[0].split(" ", 1)[0]
                if name.endswith("events_deferred_unavailable_total"):
                    out[process] += float(line.rsplit(" ", 1)[1])
    return out
