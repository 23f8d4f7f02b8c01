"""The consumer's batch handler: one transaction per batch, ack only after it commits."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from analytics_service.aggregation import InvalidFactError, OrderFact, fact_from_event
from analytics_service.metrics import ApplyMetrics
from analytics_service.ports import (
    AnalyticsStore,
    StoreConflictError,
    StoreUnavailableError,
    SummaryInvalidator,
)
from common.messaging.consumer import Delivery
from common.messaging.outcomes import Ack, Outcome, Park, Retry
from common.observability import get_logger

__all__ = ["AnalyticsHandler"]

log = get_logger(__name__)


class AnalyticsHandler:
    """Turns deliveries into facts and applies them through the store.

    Invalid facts are parked; a database outage retries the batch through a retry tier; a
    deadlock is rerun here a few times first, because it usually clears at once.
    """

    def __init__(
        self,
        store: AnalyticsStore,
        invalidator: SummaryInvalidator,
        metrics: ApplyMetrics,
        *,
        consumer: str,
        clock: Callable[[], datetime],
        conflict_retries: int = 3,
        conflict_backoff: float = 0.02,
    ) -> None:
        self._store = store
        self._invalidator = invalidator
        self._metrics = metrics
        self._consumer = consumer
        self._clock = clock
        self._conflict_retries = conflict_retries
        self._conflict_backoff = conflict_backoff

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> Sequence[Outcome]:
        outcomes: list[Outcome | None] = [None] * len(deliveries)
        facts: list[tuple[int, OrderFact]] = []
        for i, delivery in enumerate(deliveries):
            try:
                facts.append((i, fact_from_event(delivery.envelope, delivery.event)))
            except InvalidFactError as exc:
                outcomes[i] = Park("invalid_payload", str(exc)[:500])
        for i, outcome in await self._apply_all(facts):
            outcomes[i] = outcome
        return [o if o is not None else Retry("not_applied") for o in outcomes]

    async def _apply_all(self, facts: list[tuple[int, OrderFact]]) -> list[tuple[int, Outcome]]:
        if not facts:
            return []
        try:
            applied = await self._apply([f for _, f in facts])
        except StoreUnavailableError as exc:
            return [(i, Retry("database_unavailable", str(exc)[:300])) for i, _ in facts]
        except StoreConflictError as exc:
            return [(i, Retry("database_conflict", str(exc)[:300])) for i, _ in facts]
        except Exception as exc:
            log.exception("apply_failed", batch=len(facts))
            if len(facts) == 1:
                return [(facts[0][0], Retry("apply_failed", repr(exc)[:300]))]
            # One event the database rejects must not send its whole batch to the DLQ.
            settled: list[tuple[int, Outcome]] = []
            for one in facts:
                settled.extend(await self._apply_all([one]))
            return settled
        settled = []
        counted: set[uuid.UUID] = set()
        for i, fact in facts:
            # The same event twice in one batch: the first copy is the applied one.
            if fact.event_id in applied and fact.event_id not in counted:
                counted.add(fact.event_id)
                settled.append((i, Ack("applied")))
            else:
                settled.append((i, Ack("duplicate")))
        return settled

    async def _apply(self, facts: list[OrderFact]) -> set[uuid.UUID]:
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                applied = await self._store.apply(self._consumer, facts, self._clock())
            except StoreConflictError:
                if attempt >= self._conflict_retries:
                    raise
                attempt += 1
                self._metrics.conflicts.inc()
                await asyncio.sleep(self._conflict_backoff * attempt * (1 + random.random()))
                continue
            self._metrics.apply_seconds.observe(time.perf_counter() - started)
            break
        if applied:
            await self._invalidator.invalidate()
            self._observe(applied)
        return {f.event_id for f in applied}

    def _observe(self, applied: list[OrderFact]) -> None:
        now = self._clock()
        for fact in applied:
            self._metrics.orders_applied.labels(fact.currency).inc()
            self._metrics.revenue.labels(fact.currency).inc(float(fact.total_amount))
            self._metrics.end_to_end_seconds.observe(
                max(0.0, (now - fact.occurred_at).total_seconds())
            )
        latest = max(f.occurred_at for f in applied)
        self._metrics.lag_seconds.set(max(0.0, (now - latest).total_seconds()))
        self._metrics.last_applied_timestamp.set(latest.timestamp())
