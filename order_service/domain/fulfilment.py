"""The fulfilment saga's decisions for a batch of orders: pure, so a batch is one transaction.

Given the orders as they stand (locked), what the payment gateway answered for each and the
stock levels, decide every transition the batch commits together: a charged order goes
created -> paid -> confirmed in one go; a declined one -> payment_failed. What needs a refund
(sold out, or cancelled while its charge was in flight) is left to the one-order path, which
calls the gateway outside any batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from order_service.domain.lifecycle import Transition, transition
from order_service.domain.order import Order, OrderStatus

__all__ = [
    "PAYMENT_PENDING",
    "FulfilmentDecision",
    "PaymentRecord",
    "StockLevel",
    "decide_batch",
    "needs_charge",
    "payment_record",
    "reserve_stock",
]

S = OrderStatus
PAYMENT_PENDING = "pending"


@dataclass(frozen=True)
class PaymentRecord:
    """The service's record of an order's charge. ``pending`` is written before the gateway is
    called, so no charge can exist that the service does not know it may have made."""

    order_id: uuid.UUID
    status: str  # pending, charged, declined, refunded
    payment_id: str | None
    amount: Decimal
    currency: str
    decline_reason: str | None
    refund_id: str | None
    charged_at: datetime


@dataclass(frozen=True)
class StockLevel:
    product_id: str
    available: int
    reserved: int


@dataclass(frozen=True)
class FulfilmentDecision:
    """The outcome for one order: a metric label, the transitions to commit (in order), and
    whether the one-order path must finish it (a refund is due)."""

    label: str
    transitions: tuple[Transition, ...] = ()
    reasons: tuple[str | None, ...] = ()
    follow_up: bool = False


def payment_record(
    order: Order,
    status: str,
    now: datetime,
    *,
    payment_id: str | None = None,
    decline_reason: str | None = None,
) -> PaymentRecord:
    """A pending intent (before the gateway call) or the gateway's answer, for ``order``."""
    return PaymentRecord(
        order_id=order.order_id,
        status=status,
        payment_id=payment_id,
        amount=order.total_amount,
        currency=order.currency,
        decline_reason=decline_reason,
        refund_id=None,
        charged_at=now,
    )


def needs_charge(order: Order, payment: PaymentRecord | None) -> bool:
    """The gateway must be asked: a created order not yet answered, or a cancelled one whose
    charge was in flight when it was cancelled (its answer decides whether to refund)."""
    if order.status is S.CREATED:
        return payment is None or payment.status == PAYMENT_PENDING
    if order.status is S.CANCELLED:
        return payment is not None and payment.status == PAYMENT_PENDING
    return False


def decide_batch(
    orders: Mapping[uuid.UUID, Order],
    payments: Mapping[uuid.UUID, PaymentRecord],
    stock: Mapping[str, StockLevel],
    requested: list[uuid.UUID],
    now: datetime,
) -> tuple[dict[uuid.UUID, FulfilmentDecision], dict[str, StockLevel]]:
    """Decisions for ``requested`` (in order, so stock goes to the earliest) and new stock."""
    levels = dict(stock)
    decisions: dict[uuid.UUID, FulfilmentDecision] = {}
    for order_id in requested:
        if order_id in decisions:
            continue
        order = orders.get(order_id)
        if order is None:
            decisions[order_id] = FulfilmentDecision("missing")
            continue
        decisions[order_id] = _decide(order, payments.get(order_id), levels, now)
    return decisions, levels


def _decide(
    order: Order, payment: PaymentRecord | None, levels: dict[str, StockLevel], now: datetime
) -> FulfilmentDecision:
    if order.status is S.CREATED:
        if payment is None or payment.status == PAYMENT_PENDING:
            return FulfilmentDecision("payment_unknown")
        if payment.status == "declined":
            failed = transition(order, S.PAYMENT_FAILED, now, reason=payment.decline_reason)
            return FulfilmentDecision("payment_failed", (failed,), (payment.decline_reason,))
        paid = transition(order, S.PAID, now, payment_id=payment.payment_id)
        if not reserve_stock(paid.after, levels):
            return FulfilmentDecision("rejected", (paid,), (None,), follow_up=True)
        confirmed = transition(paid.after, S.CONFIRMED, now)
        return FulfilmentDecision("confirmed", (paid, confirmed), (None, None))
    if order.status is S.PAID:
        if not reserve_stock(order, levels):
            return FulfilmentDecision("rejected", follow_up=True)
        return FulfilmentDecision("confirmed", (transition(order, S.CONFIRMED, now),), (None,))
    if order.status is S.CANCELLED:
        owes_refund = (
            payment is not None and payment.status == "charged" and payment.refund_id is None
        )
        return FulfilmentDecision("cancelled", follow_up=owes_refund)
    if order.status is S.SCHEDULED:
        return FulfilmentDecision("not_due")
    return FulfilmentDecision("duplicate")


def reserve_stock(order: Order, levels: dict[str, StockLevel]) -> bool:
    """Take the order's quantity; a product without a stock level is not stock-managed."""
    level = levels.get(order.product_id)
    if level is None:
        return True
    if level.available < order.quantity:
        return False
    levels[order.product_id] = replace(
        level, available=level.available - order.quantity, reserved=level.reserved + order.quantity
    )
    return True
