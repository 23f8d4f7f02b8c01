"""One message's progress through a batch, and the part of it carried in its headers.

Partial progress survives a retry: every (notification, channel) that succeeded is carried in
the message's headers, and the retry skips it. A send the channel accepted but Redis would not
record is carried as done *and* unrecorded (with its claim token), so the next copy records it
without sending.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.messaging.consumer import Delivery
from common.messaging.outcomes import Outcome
from common.observability import bind_context
from notification_worker.notifiers import Channel
from notification_worker.planning import Notification

__all__ = [
    "DONE_HEADER",
    "UNRECORDED_HEADER",
    "Job",
    "SendResult",
    "Status",
    "entry",
    "errors",
    "progress_headers",
    "remaining",
]

# "kind/channel" sends this message already made or found made; carried through retries,
# deferrals and the parking lot so later hops neither ask the sent store again nor count them
# as duplicates.
DONE_HEADER = "x-notify-done"
# "kind/channel=token" sends made but not yet recorded (Redis refused the record): the next hop
# records them under the same token, without sending.
UNRECORDED_HEADER = "x-notify-unrecorded"


class Status(enum.Enum):
    SENT = "sent"
    SKIPPED = "skipped"
    BUSY = "busy"
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    OUTAGE = "outage"  # the sent store did not answer: nothing was sent


@dataclass(frozen=True)
class SendResult:
    notification: Notification
    channel: str
    status: Status
    error: str = ""


@dataclass
class Job:
    """One message of the batch and what happened to it."""

    delivery: Delivery
    plan: list[Notification] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    unrecorded: dict[str, str] = field(default_factory=dict)
    due: list[Notification] = field(default_factory=list)
    later: list[Notification] = field(default_factory=list)
    results: list[SendResult] = field(default_factory=list)
    outage: str = ""
    outcome: Outcome | None = None

    @classmethod
    def resumed(cls, delivery: Delivery, plan: list[Notification]) -> Job:
        """A job that starts from the progress the message's headers carry."""
        unrecorded = _unrecorded(delivery)
        return cls(delivery, plan, done=_done(delivery) | set(unrecorded), unrecorded=unrecorded)

    def ids(self) -> dict[str, str]:
        """For a log line outside ``context()`` (binding costs more than passing them)."""
        return {
            "event_id": str(self.delivery.envelope.event_id),
            "correlation_id": self.delivery.envelope.correlation_id,
        }

    def context(self) -> Any:
        return bind_context(**self.ids())

    def mark_outage(self, error: str) -> None:
        """Keeps the first outage seen: the one that stopped the work."""
        if not self.outage:
            self.outage = error

    def blocked(self) -> bool:
        return self.outage != "" or any(
            r.status in (Status.PERMANENT, Status.TRANSIENT, Status.BUSY) for r in self.results
        )


def entry(notification: Notification, channel: Channel | str) -> str:
    name = channel if isinstance(channel, str) else channel.name
    return f"{notification.kind}/{name}"


def remaining(notification: Notification, now: datetime) -> float:
    if notification.due is None:
        return 0.0
    return (notification.due - now).total_seconds()


def progress_headers(job: Job) -> dict[str, Any]:
    headers: dict[str, Any] = {DONE_HEADER: ",".join(sorted(job.done))}
    incoming = job.delivery.headers
    if job.unrecorded or UNRECORDED_HEADER in incoming:
        headers[UNRECORDED_HEADER] = ",".join(f"{e}={t}" for e, t in sorted(job.unrecorded.items()))
    return headers


def errors(results: list[SendResult]) -> str:
    return "; ".join(f"{r.channel}/{r.notification.kind}: {r.error}" for r in results)[:500]


def _done(delivery: Delivery) -> set[str]:
    raw = delivery.headers.get(DONE_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode()
    return {k for k in str(raw or "").split(",") if k}


def _unrecorded(delivery: Delivery) -> dict[str, str]:
    raw = delivery.headers.get(UNRECORDED_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode()
    pairs = (item.partition("=") for item in str(raw or "").split(",") if item)
    return {entry: token for entry, _, token in pairs if entry and token}
