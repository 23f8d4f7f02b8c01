"""The one-order path's payment steps: a charge recorded before and after the gateway call,
and a refund made once per order (both keyed by the order id at the gateway)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from common.observability import get_logger
from order_service.domain.fulfilment import PAYMENT_PENDING, payment_record
from order_service.domain.order import Order
from order_service.ports import PaymentGateway, PaymentRecord, UnitOfWork

__all__ = ["PaymentSteps"]

log = get_logger(__name__)


class PaymentSteps:
    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        gateway: PaymentGateway,
        clock: Callable[[], datetime],
    ) -> None:
        self._uow_factory = uow_factory
        self._gateway = gateway
        self._clock = clock

    async def charge(self, order: Order) -> PaymentRecord:
        """The gateway's answer for this order: recorded once, reused on every retry.

        A pending record commits before the gateway is called, so a charge whose answer was
        never stored is still known (and refunded if the order ends up cancelled)."""
        async with self._uow_factory() as uow:
            known = await uow.payments.get(order.order_id)
        if known is not None and known.status != PAYMENT_PENDING:
            return known
        if known is None:
            async with self._uow_factory() as uow:
                await uow.payments.add_intents(
                    [payment_record(order, PAYMENT_PENDING, self._clock())]
                )
                await uow.commit()
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
        async with self._uow_factory() as uow:
            await uow.payments.save_answers([answer])
            await uow.commit()
        async with self._uow_factory() as uow:
            stored = await uow.payments.get(order.order_id)
        assert stored is not None
        return stored

    async def charge_in_flight(self, order: Order) -> bool:
        async with self._uow_factory() as uow:
            payment = await uow.payments.get(order.order_id)
        return payment is not None and payment.status == PAYMENT_PENDING

    async def refund(self, order: Order) -> tuple[str | None, str | None]:
        async with self._uow_factory() as uow:
            ids = await self.refund_within(uow, order)
            await uow.commit()
        return ids

    async def refund_within(self, uow: UnitOfWork, order: Order) -> tuple[str | None, str | None]:
        """Refund a charged payment once (keyed by order id); returns (payment_id, refund_id)."""
        payment = await uow.payments.get(order.order_id)
        if payment is None or payment.status == "declined" or payment.payment_id is None:
            return None, None
        if payment.refund_id is not None:
            return payment.payment_id, payment.refund_id
        result = await self._gateway.refund(
            idempotency_key=str(order.order_id),
            payment_id=payment.payment_id,
            amount=payment.amount,
            currency=payment.currency,
        )
        await uow.payments.record_refund(order.order_id, result.refund_id, self._clock())
        log.info("payment_refunded", order_id=str(order.order_id), refund_id=result.refund_id)
        return payment.payment_id, result.refund_id
