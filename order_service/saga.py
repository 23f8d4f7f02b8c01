"""The fulfilment saga for a batch of new orders: charge them all at once, commit them at once.

1. One read of the batch's orders and payment records.
2. A pending payment record for every order about to be charged, committed before any gateway
   call: no charge can happen that the service has no record of.
3. The gateway calls, concurrently (the gateway is idempotent by order id).
4. One transaction: lock the orders and their stock rows, decide every transition
   (domain/fulfilment.py), write states, timeline rows, outbox events, payment answers and stock
   levels as multi-row statements. A charged order commits paid and confirmed together.
5. After the commit: wake the relay, refresh the cache, finish refunds on the one-order path.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from common.observability import get_logger
from order_service.changes import change_records
from order_service.domain.fulfilment import (
    PAYMENT_PENDING,
    FulfilmentDecision,
    PaymentRecord,
    decide_batch,
    needs_charge,
    payment_record,
)
from order_service.domain.lifecycle import TimelineEntry
from order_service.domain.order import Order
from order_service.lifecycle import LifecycleService
from order_service.ports import (
    BatchWrites,
    OrderCache,
    OutboxEvent,
    PaymentGateway,
    PaymentGatewayError,
    TransitionStore,
)
from order_service.services import LockTimeoutError

__all__ = ["FulfilmentRequest", "FulfilmentSaga"]

log = get_logger(__name__)

Render = Callable[[Order, Sequence[TimelineEntry]], bytes]


@dataclass(frozen=True)
class FulfilmentRequest:
    order_id: uuid.UUID
    correlation_id: str


class FulfilmentSaga:
    def __init__(
        self,
        store: TransitionStore,
        cache: OrderCache,
        gateway: PaymentGateway,
        one_order: LifecycleService,
        *,
        render: Render,
        clock: Callable[[], datetime],
        exchange: str = "orders",
        on_committed: Callable[[Sequence[OutboxEvent]], None] = lambda events: None,
        deadlock_retries: int = 3,
    ) -> None:
        self._store = store
        self._cache = cache
        self._gateway = gateway
        self._one_order = one_order
        self._render = render
        self._clock = clock
        self._exchange = exchange
        self._on_committed = on_committed
        self._deadlock_retries = deadlock_retries

    async def fulfil_batch(
        self, requests: Sequence[FulfilmentRequest]
    ) -> dict[uuid.UUID, str | Exception]:
        """A label per order (what happened), or the exception that makes that one order retry.

        Raises when the whole batch failed (database trouble): nothing was committed then, or
        what was committed is found again on the retry.
        """
        ids = list(dict.fromkeys(r.order_id for r in requests))
        correlation = {r.order_id: r.correlation_id for r in requests}
        orders, payments = await self._store.read(ids)
        to_charge = [o for o in orders.values() if needs_charge(o, payments.get(o.order_id))]
        # The pending records commit before any gateway call.
        now = self._clock()
        await self._store.add_intents(
            [
                payment_record(o, PAYMENT_PENDING, now)
                for o in to_charge
                if o.order_id not in payments
            ]
        )
        answers, gateway_errors = await self._charge_all(to_charge)

        products = {o.product_id for o in orders.values()}
        decisions = await self._commit(ids, products, answers, correlation)
        results: dict[uuid.UUID, str | Exception] = {}
        for order_id in ids:
            if order_id in gateway_errors and decisions[order_id].label == "payment_unknown":
                results[order_id] = gateway_errors[order_id]
                continue
            decision = decisions[order_id]
            if decision.follow_up:
                try:
                    results[order_id] = await self._one_order.fulfil(
                        order_id, correlation_id=correlation[order_id]
                    )
                except Exception as exc:  # retried alone; its neighbours are done
                    results[order_id] = exc
                continue
            results[order_id] = decision.label
        return results

    async def _charge_all(
        self, orders: Sequence[Order]
    ) -> tuple[dict[uuid.UUID, PaymentRecord], dict[uuid.UUID, Exception]]:
        if not orders:
            return {}, {}
        outcomes = await asyncio.gather(
            *(
                self._gateway.charge(
                    idempotency_key=str(o.order_id), amount=o.total_amount, currency=o.currency
                )
                for o in orders
            ),
            return_exceptions=True,
        )
        answers: dict[uuid.UUID, PaymentRecord] = {}
        errors: dict[uuid.UUID, Exception] = {}
        answered_at = self._clock()
        for order, outcome in zip(orders, outcomes, strict=True):
            if isinstance(outcome, PaymentGatewayError):
                errors[order.order_id] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                answers[order.order_id] = payment_record(
                    order,
                    "charged" if outcome.approved else "declined",
                    answered_at,
                    payment_id=outcome.payment_id,
                    decline_reason=outcome.decline_reason,
                )
        return answers, errors

    async def _commit(
        self,
        ids: list[uuid.UUID],
        products: set[str],
        answers: dict[uuid.UUID, PaymentRecord],
        correlation: dict[uuid.UUID, str],
    ) -> dict[uuid.UUID, FulfilmentDecision]:
        for attempt in range(self._deadlock_retries):
            try:
                return await self._commit_once(ids, products, answers, correlation)
            except LockTimeoutError:
                if attempt + 1 == self._deadlock_retries:
                    raise
                log.info("fulfilment_batch_deadlock_rerun", size=len(ids), attempt=attempt + 1)
        raise AssertionError("unreachable")

    async def _commit_once(
        self,
        ids: list[uuid.UUID],
        products: set[str],
        answers: dict[uuid.UUID, PaymentRecord],
        correlation: dict[uuid.UUID, str],
    ) -> dict[uuid.UUID, FulfilmentDecision]:
        # Stock rows of every product in the batch are locked, also those of orders another
        # path has moved on meanwhile: a few more locks, and the read and lock stay one packet.
        async with self._store.lock(ids, products) as locked:
            stored = locked.payments
            # A recorded answer wins over ours (the gateway gave both the same, by its key).
            taken = {i: a for i, a in answers.items() if i not in stored or _pending(stored[i])}
            payments = {**stored, **taken}
            now = self._clock()
            decisions, new_levels = decide_batch(locked.orders, payments, locked.levels, ids, now)

            changed: dict[uuid.UUID, Order] = {}
            entries: list[tuple[uuid.UUID, TimelineEntry]] = []
            events: list[OutboxEvent] = []
            for order_id, decision in decisions.items():
                for change, reason in zip(decision.transitions, decision.reasons, strict=True):
                    event, entry = change_records(
                        change,
                        correlation_id=correlation[order_id],
                        exchange=self._exchange,
                        reason=reason,
                    )
                    entries.append((order_id, entry))
                    events.append(event)
                    changed[order_id] = change.after
            await locked.commit(
                BatchWrites(
                    answers=list(taken.values()),
                    states=list(changed.values()),
                    transitions=entries,
                    events=events,
                    levels=[lv for p, lv in new_levels.items() if lv != locked.levels.get(p)],
                    now=now,
                )
            )
            timelines = {i: list(locked.timelines.get(i, ())) for i in changed}
        for order_id, entry in entries:
            timelines[order_id].append(entry)
        if events:
            self._on_committed(events)
        await self._refresh_cache(changed, timelines)
        for order_id, entry in entries:
            log.info("order_transitioned", order_id=str(order_id), status=entry.status.value)
        return decisions

    async def _refresh_cache(
        self, changed: dict[uuid.UUID, Order], timelines: dict[uuid.UUID, list[TimelineEntry]]
    ) -> None:
        if changed:
            await self._cache.put_many(
                {i: self._render(o, timelines.get(i, [])) for i, o in changed.items()}
            )


def _pending(record: PaymentRecord) -> bool:
    return record.status == PAYMENT_PENDING
