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
    def done_count(self) -> int:
        """Orders final plus notifications arrived: what grows while a backlog drains."""
        final = sum(1 for s in self.states.values() if s in FINAL_STATES)
        return final + sum(v.delivered for v in self.channels.values())

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
    stall: float = 30.0,
) -> SendsVerdict:
    """Until every order rests in a final state and every notification it asks for arrived at
    both receivers, then a settle window for late doubles, then the verdict.

    The wait ends at ``timeout``, or later while the backlog still drains: past ``timeout`` it
    goes on as long as a notification arrived or an order became final within the last
    ``stall`` seconds (at most three times ``timeout``). A backlog drains at the machine's pace
    (a three times slower machine once missed a fixed bound with thousands still on their
    way); a notification that never comes stops all progress and still fails the test."""
    ids = [o.order_id for o in orders]
    receivers = {"webhook": hook.deliveries, "smtp": mail.deliveries}
    started = time.monotonic()
    last_progress, progress = started, -1

    async def judge() -> SendsVerdict:
        records, _ = await auditor.analytics_records(ids)
        states = {r.order_id: r.status for r in records}
        return _judge({oid: states.get(oid) for oid in ids}, receivers)

    while not (verdict := await judge()).complete:
        now = time.monotonic()
        done = verdict.done_count
        if done > progress:
            last_progress, progress = now, done
        if now - started >= 3 * timeout or (
            now - started >= timeout and now - last_progress >= stall
        ):
            break
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
