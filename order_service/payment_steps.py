"""The one-order path's payment steps: a charge recorded before and after the gateway call,
and a refund made once per order (both keyed by the order id at the gateway)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from common.observability import get_logger
from order_service.domain.fulfilment import PAYMENT_PENDING, payment_record
from order_service.domain.order import Order
from order_service.ports import BatchWrites, PaymentGateway, PaymentRecord, TransitionStore

__all__ = ["PaymentSteps"]

log = get_logger(__name__)


class PaymentSteps:
    def __init__(
        self,
        store: TransitionStore,
        gateway: PaymentGateway,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._gateway = gateway
        self._clock = clock

    async def charge(self, order: Order, known: PaymentRecord | None) -> PaymentRecord:
        """The gateway's answer for this order (``known``: its payment record as last read):
        recorded once, reused on every retry.

        A pending record commits before the gateway is called, so a charge whose answer was
        never stored is still known (and refunded if the order ends up cancelled)."""
        if known is not None and known.status != PAYMENT_PENDING:
            return known
        if known is None:
            await self._store.add_intents([payment_record(order, PAYMENT_PENDING, self._clock())])
        result = await self._gateway.charge(
            idempotency_key=str(order.order_id), amount=order.total_amount, currency=order.currency
        )
        answer = payment_record(
            order,
            "charged" if result.approved else "declined",
            self._clock(),
            payment_id=result.payment_id,
            decline_reason=result.decline_reason,
        )
        # Under the order's row lock, which every writer of an answer takes: a recorded answer
        # (a concurrent saga batch's, the same by the gateway's key) stays and is returned;
        # only a pending record takes ours.
        async with self._store.lock([order.order_id], ()) as locked:
            stored = locked.payments.get(order.order_id)
            if stored is not None and stored.status != PAYMENT_PENDING:
                return stored
            await locked.commit(BatchWrites(now=answer.charged_at, answers=[answer]))
        return answer

    async def refund(self, payment: PaymentRecord | None) -> tuple[str | None, str | None]:
        """Refund a charged payment once (keyed by order id); returns (payment_id, refund_id).

        The caller commits the refund id (``BatchWrites.refunds``) in the transaction that holds
        the order's row lock; a payment that already has one is not refunded again."""
        if payment is None or payment.status == "declined" or payment.payment_id is None:
            return None, None
        if payment.refund_id is not None:
            return payment.payment_id, payment.refund_id
        result = await self._gateway.refund(
            idempotency_key=str(payment.order_id),
            payment_id=payment.payment_id,
            amount=payment.amount,
            currency=payment.currency,
        )
        log.info("payment_refunded", order_id=str(payment.order_id), refund_id=result.refund_id)
        return payment.payment_id, result.refund_id
