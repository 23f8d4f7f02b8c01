"""The consumer's batch handler: one transaction per batch, ack only after it commits."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from analytics_service.aggregation import Change, InvalidFactError, OrderFact
from analytics_service.event_facts import fact_from_event
from analytics_service.metrics import ApplyMetrics
from analytics_service.ports import (
    AnalyticsStore,
    StoreConflictError,
    StoreUnavailableError,
    SummaryInvalidator,
)
from common.messaging.consumer import Delivery
from common.messaging.outcomes import Ack, Outcome, Park, Retry, Unavailable
from common.observability import get_logger

__all__ = ["AnalyticsHandler"]

log = get_logger(__name__)


class AnalyticsHandler:
    """Turns deliveries into facts and applies them through the store.

    Every lifecycle event is a fact about its order; the store keeps the newest version, so an
    event is acked "applied" when it moved its order, "duplicate" when the event or that order
    version was already recorded, and "superseded" when a newer version was. Invalid facts are
    parked alone; an event the database rejects is split off its batch and retried alone; a
    database outage retries the batch through a retry tier; a deadlock is rerun here a few
    times first, because it usually clears at once.
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
            except Exception as exc:
                # Passed the contract but breaks the fold (a year-1 timestamp overflows UTC):
                # pure code, so it fails the same way every time. Parked alone.
                outcomes[i] = Park("invalid_payload", repr(exc)[:500])
        for i, outcome in await self._apply_all(facts):
            outcomes[i] = outcome
        return [_outage_deferred(o) if o is not None else Retry("not_applied") for o in outcomes]

    async def _apply_all(self, facts: list[tuple[int, OrderFact]]) -> list[tuple[int, Outcome]]:
        if not facts:
            return []
        try:
            applied = await self._apply([f for _, f in facts])
        except StoreUnavailableError as exc:
            # An outage is no fault of these events: never split or park on it.
            return [(i, Retry("database_unavailable", str(exc)[:300])) for i, _ in facts]
        except StoreConflictError as exc:
            return [(i, Retry("database_conflict", str(exc)[:300])) for i, _ in facts]
        except Exception as exc:
            if len(facts) == 1:
                log.warning(
                    "event_apply_failed", event_id=str(facts[0][1].event_id), error=repr(exc)
                )
                return [(facts[0][0], Retry("apply_failed", repr(exc)[:300]))]
            # One event the database rejects must not fail its neighbours: halve the batch
            # until it stands alone (about 2·log2(n) transactions for one bad event in n).
            log.warning("batch_apply_failed", batch=len(facts), error=repr(exc))
            middle = len(facts) // 2
            return [
                *await self._apply_all(facts[:middle]),
                *await self._apply_all(facts[middle:]),
            ]
        settled: list[tuple[int, Outcome]] = []
        counted: set[uuid.UUID] = set()
        for i, fact in facts:
            # The same event twice in one batch: the first copy is the one that counts.
            label = applied.get(fact.event_id, "duplicate")
            if fact.event_id in counted:
                label = "duplicate"
            counted.add(fact.event_id)
            settled.append((i, Ack(label)))
        return settled

    async def _apply(self, facts: list[OrderFact]) -> dict[uuid.UUID, str]:
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
        effective = [c for c in applied if c.effective]
        if effective:
            await self._invalidator.invalidate()
            self._observe(effective)
        return {c.after.event_id: _label(c) for c in applied}

    def _observe(self, changes: list[Change]) -> None:
        """Counters are gross movements: booked revenue added when an order enters a booked
        state, reversed when it leaves one, recognised when it is confirmed."""
        now = self._clock()
        m = self._metrics
        for change in changes:
            after, before = change.after, change.before
            if before is None or before.state != after.state:
                m.transitions.labels(after.state).inc()
            amount = float(after.total_amount)
            was_booked = before is not None and before.booked
            if after.booked and not was_booked:
                m.orders_applied.labels(after.currency).inc()
                m.revenue.labels(after.currency).inc(amount)
            if was_booked and not after.booked:
                assert before is not None
                m.reversed.labels(before.currency, after.state).inc(float(before.total_amount))
            if after.recognised and not (before is not None and before.recognised):
                m.recognised.labels(after.currency).inc(amount)
            m.end_to_end_seconds.observe(max(0.0, (now - after.occurred_at).total_seconds()))
        latest = max(c.after.occurred_at for c in changes)
        self._metrics.lag_seconds.set(max(0.0, (now - latest).total_seconds()))
        self._metrics.last_applied_timestamp.set(latest.timestamp())


def _label(change: Change) -> str:
    if change.effective:
        return "applied"
    before = change.before
    if before is not None and before.order_version > change.after.order_version:
        return "superseded"
    return "duplicate"


def _outage_deferred(outcome: Outcome) -> Outcome:
    """A database outage is no fault of the events: it defers them in the delay tiers without
    spending an attempt, so an outage never parks analytics work (DESIGN.md §4 rule 7)."""
    if isinstance(outcome, Retry) and outcome.reason == "database_unavailable":
        return Unavailable(outcome.reason, outcome.error)
    return outcome
