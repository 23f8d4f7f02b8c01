"""Lifecycle use cases after creation: the fulfilment saga's one-order path, scheduled starts,
cancellation.

Every transition commits through the TransitionStore, the same writer as the saga's batches:
the order's row is locked and its version checked, then its new state, timeline row and outbox
event commit in one packet, and the cache is refreshed. Gateway calls are never made while a
transaction waits on them, except a refund, which holds the order's row lock so that a paid
order is refunded only if it really ends up cancelled or rejected (docs/lifecycle.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from common.observability import get_logger
from order_service.changes import change_records
from order_service.domain.fulfilment import PAYMENT_PENDING, StockLevel, reserve_stock
from order_service.domain.lifecycle import (
    TRANSITIONS,
    IllegalTransitionError,
    OrderHistory,
    TimelineEntry,
    transition,
)
from order_service.domain.order import Order, OrderStatus
from order_service.payment_steps import PaymentSteps
from order_service.ports import (
    BatchWrites,
    LockedBatch,
    OrderCache,
    OutboxEvent,
    PaymentGateway,
    TransitionStore,
)

__all__ = [
    "ConcurrencyConflictError",
    "LifecycleService",
    "OrderNotFoundError",
]

log = get_logger(__name__)

PRODUCER = "order-service"
S = OrderStatus
Render = Callable[[Order, Sequence[TimelineEntry]], bytes]


class OrderNotFoundError(Exception):
    """No order with this id."""


class ConcurrencyConflictError(Exception):
    """Another update changed the order first (its version moved on)."""


@dataclass(frozen=True)
class _Change:
    """One transition to commit: the target state and what its event says."""

    target: OrderStatus
    reason: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None


class LifecycleService:
    def __init__(
        self,
        store: TransitionStore,
        cache: OrderCache,
        gateway: PaymentGateway,
        *,
        render: Render,
        clock: Callable[[], datetime],
        exchange: str = "orders",
        on_committed: Callable[[Sequence[OutboxEvent]], None] = lambda events: None,
        max_conflicts: int = 8,
    ) -> None:
        self._store = store
        self._cache = cache
        self._gateway = gateway
        self._render = render
        self._clock = clock
        self._exchange = exchange
        self._on_committed = on_committed
        self._max_conflicts = max_conflicts
        self._payments = PaymentSteps(store, gateway, clock)

    # -- commands --------------------------------------------------------------------------
    async def cancel(self, order_id: uuid.UUID, *, correlation_id: str) -> OrderHistory:
        """Cancel a scheduled, created or paid order (a paid one is refunded first).

        Raises OrderNotFoundError, or IllegalTransitionError when it can no longer be cancelled.
        """
        async with self._store.lock([order_id], ()) as locked:
            # The row lock orders us against the saga: a paid order cannot become confirmed
            # while we refund it, and we see a payment that just committed.
            order = locked.orders.get(order_id)
            if order is None:
                raise OrderNotFoundError(order_id)
            if S.CANCELLED not in TRANSITIONS[order.status]:
                raise IllegalTransitionError(order.order_id, order.status, S.CANCELLED)
            payment_id = refund_id = None
            if order.status is S.PAID:
                payment_id, refund_id = await self._payments.refund(locked.payments.get(order_id))
            change = _Change(S.CANCELLED, "cancelled_by_customer", payment_id, refund_id)
            cancelled, event = await self._commit(
                locked, order, change, correlation_id=correlation_id
            )
        await self._committed(cancelled, event)
        return cancelled

    async def fulfil(self, order_id: uuid.UUID, *, correlation_id: str) -> str:
        """Take a created order through payment and stock as far as it goes; safe to repeat.

        Returns what happened (a metric label). Raises on transient trouble (the consumer
        retries the message) and ConcurrencyConflictError if the order keeps changing under us.
        """
        for _ in range(self._max_conflicts):
            orders, payments = await self._store.read([order_id])
            order, recorded = orders.get(order_id), payments.get(order_id)
            if order is None:
                return "missing"
            try:
                if order.status is S.CREATED:
                    payment = await self._payments.charge(order, recorded)
                    if payment.status == "declined":
                        await self._transition(
                            order,
                            _Change(S.PAYMENT_FAILED, reason=payment.decline_reason),
                            correlation_id=correlation_id,
                        )
                        return "payment_failed"
                    await self._transition(
                        order,
                        _Change(S.PAID, payment_id=payment.payment_id),
                        correlation_id=correlation_id,
                    )
                    continue  # on to the stock reservation
                if order.status is S.PAID:
                    return await self._confirm_or_reject(order, correlation_id=correlation_id)
                if order.status is S.CANCELLED:
                    # Cancelled while our charge was in flight: learn the gateway's answer
                    # (by its key) if it was never recorded, and give the money back.
                    if recorded is not None and recorded.status == PAYMENT_PENDING:
                        await self._payments.charge(order, recorded)
                    await self._refund_cancelled(order)
                    return "cancelled"
                return (
                    "duplicate"
                    if order.status in (S.CONFIRMED, S.PAYMENT_FAILED, S.REJECTED)
                    else "not_due"
                )
            except ConcurrencyConflictError:
                log.info("order_changed_under_fulfilment", order_id=str(order_id))
                continue
        raise ConcurrencyConflictError(order_id)

    async def start_scheduled(self, order_id: uuid.UUID, *, correlation_id: str) -> str:
        """scheduled -> created (OrderCreated, which fulfilment picks up); a no-op otherwise."""
        async with self._store.lock([order_id], ()) as locked:
            order = locked.orders.get(order_id)
            if order is None:
                return "missing"
            if order.status is not S.SCHEDULED:
                return "cancelled" if order.status is S.CANCELLED else "duplicate"
            started, event = await self._commit(
                locked, order, _Change(S.CREATED), correlation_id=correlation_id
            )
        await self._committed(started, event)
        return "started"

    async def still_scheduled(self, order_id: uuid.UUID) -> bool:
        orders, _ = await self._store.read([order_id])
        order = orders.get(order_id)
        return order is not None and order.status is S.SCHEDULED

    # -- steps -----------------------------------------------------------------------------
    async def _confirm_or_reject(self, order: Order, *, correlation_id: str) -> str:
        """paid -> confirmed with its stock reserved, or (sold out) refunded and rejected: one
        transaction either way, holding the order's and the product's rows."""
        async with self._store.lock([order.order_id], [order.product_id]) as locked:
            current = _same_version(locked, order)
            levels = dict(locked.levels)
            if reserve_stock(current, levels):
                level = levels.get(current.product_id)
                changed, event = await self._commit(
                    locked,
                    current,
                    _Change(S.CONFIRMED),
                    correlation_id=correlation_id,
                    levels=[level] if level is not None else [],
                )
                label = "confirmed"
            else:
                payment_id, refund_id = await self._payments.refund(
                    locked.payments.get(order.order_id)
                )
                rejected = _Change(S.REJECTED, "out_of_stock", payment_id, refund_id)
                changed, event = await self._commit(
                    locked, current, rejected, correlation_id=correlation_id
                )
                label = "rejected"
        await self._committed(changed, event)
        return label

    async def _refund_cancelled(self, order: Order) -> None:
        """A cancelled order's charge (one that landed after the cancellation) is refunded."""
        async with self._store.lock([order.order_id], ()) as locked:
            _, refund_id = await self._payments.refund(locked.payments.get(order.order_id))
            if refund_id is not None:  # a payment keeps its first refund id (BatchWrites)
                await locked.commit(
                    BatchWrites(now=self._clock(), refunds=[(order.order_id, refund_id)])
                )

    async def _transition(self, order: Order, change: _Change, *, correlation_id: str) -> Order:
        async with self._store.lock([order.order_id], ()) as locked:
            changed, event = await self._commit(
                locked, _same_version(locked, order), change, correlation_id=correlation_id
            )
        await self._committed(changed, event)
        return changed.order

    async def _commit(
        self,
        locked: LockedBatch,
        order: Order,
        change: _Change,
        *,
        correlation_id: str,
        levels: Sequence[StockLevel] = (),
    ) -> tuple[OrderHistory, OutboxEvent]:
        """The order's new state, timeline row and outbox event (with a refund's id and the
        stock it took), committed in the transaction that locked it."""
        now = self._clock()
        step = transition(
            order,
            change.target,
            now,
            reason=change.reason,
            payment_id=change.payment_id,
            refund_id=change.refund_id,
        )
        event, entry = change_records(
            step, correlation_id=correlation_id, exchange=self._exchange, reason=change.reason
        )
        await locked.commit(
            BatchWrites(
                now=now,
                states=[step.after],
                transitions=[(order.order_id, entry)],
                events=[event],
                levels=levels,
                refunds=[(order.order_id, change.refund_id)] if change.refund_id else [],
            )
        )
        timeline = [*locked.timelines.get(order.order_id, ()), entry]
        return OrderHistory(step.after, timeline), event

    async def _committed(self, changed: OrderHistory, event: OutboxEvent) -> None:
        self._on_committed([event])
        order = changed.order
        # A plain SET after the commit: a reader that loaded the old row fills with NX and so
        # never overwrites this (adapters/cache.py).
        await self._cache.put(order.order_id, self._render(order, changed.timeline))
        log.info("order_transitioned", order_id=str(order.order_id), status=order.status.value)


def _same_version(locked: LockedBatch, order: Order) -> Order:
    """The locked row, if it is still the version the caller decided on."""
    current = locked.orders.get(order.order_id)
    if current is None or current.order_version != order.order_version:
        raise ConcurrencyConflictError(order.order_id)
    return current
