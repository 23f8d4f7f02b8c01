"""Sends counted where they land: the webhook receiver (by idempotency key) and the SMTP receiver
(by Message-ID) of a fault run, each judged on its own (loadtool.audit.judge_deliveries)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadtool.audit import Auditor, DeliveryVerdict, judge_deliveries
from loadtool.runner import AcceptedOrder
from tests.support.smtp_receiver import SmtpReceiver
from tests.support.webhook_receiver import Delivery, WebhookReceiver

__all__ = ["FINAL_STATES", "NOTIFY_IN_FLIGHT", "SendsVerdict", "await_deliveries", "check_sends"]

# States an order rests in once the saga is done (fulfilment is on in every scenario).
FINAL_STATES = frozenset({"confirmed", "payment_failed", "rejected", "cancelled"})
# NOTIFY_CONCURRENCY batches of NOTIFY_BATCH_SIZE sends (the defaults the fault runs use).
NOTIFY_IN_FLIGHT = 4 * 32


@dataclass
class SendsVerdict:
    channels: dict[str, DeliveryVerdict]
    states: dict[str, str | None]

    @property
    def not_final(self) -> list[str]:
        return sorted(f"{o}:{s}" for o, s in self.states.items() if s not in FINAL_STATES)

    @property
    def complete(self) -> bool:
        return not self.not_final and not any(v.missing for v in self.channels.values())


def _judge(
    states: Mapping[str, str | None], receivers: Mapping[str, Sequence[Delivery]]
) -> SendsVerdict:
    return SendsVerdict(
        {
            name: judge_deliveries(states, [(d.key, d.order_id, d.kind) for d in deliveries])
            for name, deliveries in receivers.items()
        },
        dict(states),
    )


async def await_deliveries(
    auditor: Auditor,
    hook: WebhookReceiver,
    mail: SmtpReceiver,
    orders: Sequence[AcceptedOrder],
    timeout: float,
    settle: float = 1.0,
) -> SendsVerdict:
    """Until every order rests in a final state and every notification it asks for arrived at
    both receivers (bounded), then a settle window for late doubles, then the verdict."""
    ids = [o.order_id for o in orders]
    receivers = {"webhook": hook.deliveries, "smtp": mail.deliveries}
    deadline = time.monotonic() + timeout

    async def judge() -> SendsVerdict:
        records, _ = await auditor.analytics_records(ids)
        states = {r.order_id: r.status for r in records}
        return _judge({oid: states.get(oid) for oid in ids}, receivers)

    while not (await judge()).complete and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    await asyncio.sleep(settle)  # an observation window: a late second copy still counts
    return await judge()


def check_sends(verdict: SendsVerdict, worker_kills: int) -> None:
    """Every order final; per channel, exactly one send per expected notification. The same
    key (Message-ID) again is allowed only where the worker was SIGKILLed between the
    receiver's answer and its record: at most the sends it had in flight, per kill."""
    assert verdict.not_final == [], f"orders not in a final state: {verdict.not_final[:10]}"
    for name, sends in verdict.channels.items():
        assert sends.missing == [], f"{name}: not delivered: {sends.missing[:10]}"
        assert sends.doubled == [], f"{name}: one notification under two keys: {sends.doubled[:10]}"
        in_flight = NOTIFY_IN_FLIGHT * worker_kills
        assert len(sends.redelivered) <= in_flight, (
            f"{name}: {len(sends.redelivered)} sends repeated, {worker_kills} worker kills: "
            f"{sends.redelivered[:10]}"
        )
        assert sends.unexpected == [], f"{name}: {sends.unexpected[:10]}"
