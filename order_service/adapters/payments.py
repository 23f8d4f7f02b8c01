"""The default payment gateway: a deterministic simulator behind the PaymentGateway port.

Rules (docs/lifecycle.md): an amount ending in .13 is declined (``card_declined``); a
configurable share of orders, chosen by a hash of the order id so a retry gets the same answer,
is declined (``insufficient_funds``); a configurable share of calls fails transiently (the caller
retries); every call waits the configured latency. Charges and refunds are idempotent per key.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from decimal import Decimal

from common import tracing
from order_service.ports import ChargeResult, PaymentGatewayUnavailableError, RefundResult

__all__ = ["SimulatedPaymentGateway"]

_NAMESPACE = uuid.UUID("6f1f9c7e-3a56-4c1e-9f59-0d7b1f3e2a10")


def _share(key: str, salt: str) -> float:
    """A stable number in [0, 1) for a key: the same order always gets the same answer."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimulatedPaymentGateway:
    def __init__(
        self,
        *,
        decline_rate: float = 0.0,
        error_rate: float = 0.0,
        latency: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self._decline_rate = decline_rate
        self._error_rate = error_rate
        self._latency = latency
        self._rng = rng or random.Random()
        self.charges: dict[str, ChargeResult] = {}
        self.refunds: dict[str, RefundResult] = {}
        self.charge_calls = 0
        self.refund_calls = 0

    async def _call(self) -> None:
        if self._latency > 0:
            await asyncio.sleep(self._latency)
        if self._error_rate > 0 and self._rng.random() < self._error_rate:
            raise PaymentGatewayUnavailableError("simulated gateway outage (503)")

    async def charge(self, *, idempotency_key: str, amount: Decimal, currency: str) -> ChargeResult:
        if not tracing.enabled():
            return await self._charge(idempotency_key, amount, currency)
        # The key is the order id: the span joins the trace of the order's OrderCreated.
        with tracing.span(
            "payment charge",
            key=idempotency_key,
            kind=tracing.SpanKind.CLIENT,
            attributes={"order.id": idempotency_key, "payment.currency": currency},
        ):
            return await self._charge(idempotency_key, amount, currency)

    async def _charge(self, idempotency_key: str, amount: Decimal, currency: str) -> ChargeResult:
        self.charge_calls += 1
        await self._call()
        known = self.charges.get(idempotency_key)
        if known is not None:
            return known
        if amount % 1 == Decimal("0.13"):
            result = ChargeResult(False, None, "card_declined")
        elif _share(idempotency_key, "decline") < self._decline_rate:
            result = ChargeResult(False, None, "insufficient_funds")
        else:
            payment_id = "pay_" + uuid.uuid5(_NAMESPACE, f"charge:{idempotency_key}").hex[:24]
            result = ChargeResult(True, payment_id)
        self.charges[idempotency_key] = result
        return result

    async def refund(
        self, *, idempotency_key: str, payment_id: str, amount: Decimal, currency: str
    ) -> RefundResult:
        with tracing.span(
            "payment refund",
            kind=tracing.SpanKind.CLIENT,
            attributes={"payment.id": payment_id, "payment.currency": currency},
        ):
            return await self._refund(idempotency_key, payment_id)

    async def _refund(self, idempotency_key: str, payment_id: str) -> RefundResult:
        self.refund_calls += 1
        await self._call()
        known = self.refunds.get(idempotency_key)
        if known is not None:
            return known
        result = RefundResult("ref_" + uuid.uuid5(_NAMESPACE, f"refund:{payment_id}").hex[:24])
        self.refunds[idempotency_key] = result
        return result
