"""Which notifications an event asks for, and when each is due.

An event's own notification is due at once, or at ``scheduled_time`` when its data carries one
(read from the typed event when the contract has the field, else from the raw data, so a future
additive field works without a change here). A configured reminder adds a second notification
N minutes after the event.

Order lifecycle (issue 6): every customer-visible transition (confirmed, payment failed,
rejected, cancelled) sends one message of its own kind, at once: its ``scheduled_time`` is the
order's snapshot, not a send time. Paid and scheduled are internal steps and send nothing (no
kind here). The audit counts an OrderCreated's send under the bare channel name and every other
kind under ``<channel>:<kind>`` (``log:confirmed``), so an order's counts never add up under
one key and a double send still shows as a 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from common.events import ContractError, Envelope, EventData, OrderTransitionV1
from notification_worker.templates import has_template

__all__ = ["Notification", "Planner"]

SCHEDULED_TIME_FIELD = "scheduled_time"
REMINDER = "reminder"
# The kind of an event's own notification; an event type missing here sends nothing.
PRIMARY_KINDS: dict[str, str] = {
    "OrderCreated": "created",
    "OrderConfirmed": "confirmed",
    "OrderPaymentFailed": "payment_failed",
    "OrderRejected": "rejected",
    "OrderCancelled": "cancelled",
}
# Kinds the audit counts under the bare channel name (the load tool expects {"log": 1} for an
# OrderCreated); every other kind is counted as "<channel>:<kind>".
BARE_AUDIT_KINDS = frozenset({"created"})


@dataclass(frozen=True)
class Notification:
    event_id: str
    event_type: str
    kind: str
    due: datetime | None
    primary: bool
    fields: dict[str, Any]

    @property
    def key(self) -> str:
        """Identifies this notification across redeliveries; the sent store keys on it."""
        return f"{self.event_id}:{self.kind}"

    @property
    def order_id(self) -> str | None:
        value = self.fields.get("order_id")
        return str(value) if value is not None else None

    def audit_field(self, channel: str) -> str:
        return channel if self.kind in BARE_AUDIT_KINDS else f"{channel}:{self.kind}"


class Planner:
    def __init__(self, *, reminder_minutes: float, max_ahead_seconds: float) -> None:
        self._reminder = timedelta(minutes=reminder_minutes) if reminder_minutes > 0 else None
        self._max_ahead = timedelta(seconds=max_ahead_seconds)

    def plan(self, envelope: Envelope, event: EventData, now: datetime) -> list[Notification]:
        kind = PRIMARY_KINDS.get(envelope.event_type)
        if kind is None or not has_template(envelope.event_type, kind):
            return []
        fields: dict[str, Any] = msgspec.to_builtins(event)
        fields["event_id"] = str(envelope.event_id)
        fields.setdefault("occurred_at", envelope.occurred_at.isoformat())
        event_id = str(envelope.event_id)
        # A transition is news now, whatever the order's own scheduled_time says.
        scheduled = (
            None if isinstance(event, OrderTransitionV1) else self._scheduled_time(envelope, event)
        )
        if scheduled is not None and scheduled - now > self._max_ahead:
            raise ContractError(
                f"{SCHEDULED_TIME_FIELD} {scheduled.isoformat()} is further ahead than the "
                f"allowed {self._max_ahead}"
            )
        plan = [Notification(event_id, envelope.event_type, kind, scheduled, True, fields)]
        if self._reminder is not None and has_template(envelope.event_type, REMINDER):
            plan.append(
                Notification(
                    event_id,
                    envelope.event_type,
                    REMINDER,
                    envelope.occurred_at + self._reminder,
                    False,
                    fields,
                )
            )
        return plan

    @staticmethod
    def _scheduled_time(envelope: Envelope, event: EventData) -> datetime | None:
        typed = getattr(event, SCHEDULED_TIME_FIELD, None)
        if isinstance(typed, datetime):
            value: Any = typed
        else:
            try:
                raw = msgspec.json.decode(envelope.data)
            except msgspec.DecodeError as exc:  # pragma: no cover - decoded once already
                raise ContractError(str(exc)) from exc
            value = raw.get(SCHEDULED_TIME_FIELD) if isinstance(raw, dict) else None
            if value is None:
                return None
            try:
                value = msgspec.convert(value, datetime)
            except msgspec.ValidationError as exc:
                raise ContractError(f"invalid {SCHEDULED_TIME_FIELD}: {exc}") from exc
        scheduled: datetime = value
        if scheduled.tzinfo is None:
            raise ContractError(f"invalid {SCHEDULED_TIME_FIELD}: no timezone")
        return scheduled
