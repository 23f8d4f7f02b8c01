"""The message handler: plan an event's notifications, send the due ones through every channel,
and turn what happened into one outcome for the consumer runner.

Channels send concurrently and each has its own bound on sends in flight and its own timeout,
so a slow channel delays only its own sends. Partial progress survives a retry: each
(notification, channel) is recorded in the sent store as it succeeds, and the retry skips it.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from common.events import utc_now
from common.messaging.consumer import ATTEMPT_HEADER, Delivery
from common.messaging.outcomes import Ack, Defer, Outcome, Park, Retry
from common.observability import bind_context, get_logger
from notification_worker.metrics import NotificationMetrics
from notification_worker.notifiers import Channel, PermanentSendError, TransientSendError
from notification_worker.planning import Notification, Planner
from notification_worker.scheduling import Hold, next_step
from notification_worker.sent_store import Claim, SentStore
from notification_worker.templates import render

__all__ = ["DONE_HEADER", "NotificationHandler"]

log = get_logger(__name__)

# "kind/channel" sends this message already made or found made; carried through retries and
# deferrals so later hops neither ask the sent store again nor count them as duplicates.
DONE_HEADER = "x-notify-done"
RECORD_ATTEMPTS = 5


class Status(enum.Enum):
    SENT = "sent"
    SKIPPED = "skipped"
    BUSY = "busy"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    notification: Notification
    channel: str
    status: Status
    error: str = ""


class NotificationHandler:
    def __init__(
        self,
        planner: Planner,
        channels: Sequence[Channel],
        store: SentStore,
        metrics: NotificationMetrics,
        *,
        tiers: Sequence[float],
        claim_seconds: float,
        channel_concurrency: int,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._planner = planner
        self._channels = list(channels)
        self._store = store
        self._metrics = metrics
        self._tiers = tuple(tiers)
        self._claim_seconds = claim_seconds
        self._clock = clock
        self._limits = {c.name: asyncio.Semaphore(channel_concurrency) for c in self._channels}

    async def handle(self, delivery: Delivery) -> Outcome:
        with bind_context(
            event_id=str(delivery.envelope.event_id),
            correlation_id=delivery.envelope.correlation_id,
        ):
            return await self._handle(delivery)

    async def _handle(self, delivery: Delivery) -> Outcome:
        now = self._clock()
        plan = self._planner.plan(delivery.envelope, delivery.event, now)
        if not plan:
            return Ack("no_template")
        done = _done(delivery)
        due: list[Notification] = []
        later: list[Notification] = []
        for notification in plan:
            if all(_entry(notification, c) in done for c in self._channels):
                continue
            if isinstance(next_step(_remaining(notification, now), self._tiers), Hold):
                later.append(notification)
            else:
                due.append(notification)

        results = await asyncio.gather(
            *(self._send(n, c) for n in due for c in self._channels if _entry(n, c) not in done)
        )
        done.update(
            _entry(r.notification, r.channel)
            for r in results
            if r.status in (Status.SENT, Status.SKIPPED)
        )
        for notification in due:
            if notification.due is not None and all(
                _entry(notification, c) in done for c in self._channels
            ):
                await self._store.unschedule(notification.key)
        return await self._outcome(list(results), later, done, now)

    async def _outcome(
        self,
        results: list[SendResult],
        later: list[Notification],
        done: set[str],
        now: datetime,
    ) -> Outcome:
        headers = {DONE_HEADER: ",".join(sorted(done))}
        permanent = [r for r in results if r.status is Status.PERMANENT]
        if permanent:
            return Park("permanent_failure", _errors(permanent))
        transient = [r for r in results if r.status is Status.TRANSIENT]
        if transient:
            return Retry("transient_failure", _errors(transient), headers)
        if any(r.status is Status.BUSY for r in results):
            # Another delivery of this event holds the claim: look again once it has finished.
            return Defer(min(self._tiers), headers)
        if later:
            for notification in later:
                assert notification.due is not None
                await self._store.mark_scheduled(notification.key, notification.due.timestamp())
            step = next_step(min(_remaining(n, now) for n in later), self._tiers)
            assert isinstance(step, Hold)
            # All due work succeeded, so the next due notification starts with fresh attempts.
            return Defer(step.delay, {**headers, ATTEMPT_HEADER: 1})
        if results and all(r.status is Status.SKIPPED for r in results):
            return Ack("duplicate")
        return Ack("sent")

    async def _send(self, notification: Notification, channel: Channel) -> SendResult:
        async with self._limits[channel.name]:
            token = uuid.uuid4().hex
            try:
                claim = await self._store.claim(
                    notification.key, channel.name, token, self._claim_seconds
                )
            except Exception as exc:
                return self._failed(notification, channel, Status.TRANSIENT, f"store: {exc!r}")
            if claim is Claim.SENT:
                self._metrics.skipped_duplicate.labels(channel.name).inc()
                log.info(
                    "notification_skipped_duplicate", channel=channel.name, kind=notification.kind
                )
                return SendResult(notification, channel.name, Status.SKIPPED)
            if claim is Claim.BUSY:
                return SendResult(notification, channel.name, Status.BUSY)
            message = render(
                notification.event_type, notification.kind, channel.name, notification.fields
            )
            started = time.perf_counter()
            try:
                async with asyncio.timeout(channel.timeout):
                    await channel.send(notification, message)
            except PermanentSendError as exc:
                await self._release(notification, channel, token)
                return self._failed(notification, channel, Status.PERMANENT, str(exc))
            except TransientSendError as exc:
                await self._release(notification, channel, token)
                return self._failed(notification, channel, Status.TRANSIENT, str(exc))
            except Exception as exc:  # a timeout or a channel bug: assume it may pass
                await self._release(notification, channel, token)
                return self._failed(
                    notification, channel, Status.TRANSIENT, f"{channel.name}: {exc!r}"
                )
            self._metrics.send_seconds.labels(channel.name).observe(time.perf_counter() - started)
            return await self._record(notification, channel)

    async def _record(self, notification: Notification, channel: Channel) -> SendResult:
        delay = 0.05
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                await self._store.record(
                    notification.key,
                    channel.name,
                    notification.order_id,
                    notification.audit_field(channel.name),
                )
                break
            except Exception as exc:
                if attempt == RECORD_ATTEMPTS:
                    # Sent but not recorded: the documented duplicate window.
                    log.error(
                        "notification_record_failed",
                        channel=channel.name,
                        kind=notification.kind,
                        error=repr(exc),
                    )
                    self._metrics.sent.labels(channel.name).inc()
                    return SendResult(
                        notification, channel.name, Status.TRANSIENT, f"record: {exc!r}"
                    )
                await asyncio.sleep(delay)
                delay *= 2
        self._metrics.sent.labels(channel.name).inc()
        return SendResult(notification, channel.name, Status.SENT)

    async def _release(self, notification: Notification, channel: Channel, token: str) -> None:
        try:
            await self._store.release(notification.key, channel.name, token)
        except Exception as exc:
            # The lease expires on its own; a retry before then just waits as "busy".
            log.warning("claim_release_failed", channel=channel.name, error=repr(exc))

    def _failed(
        self, notification: Notification, channel: Channel, status: Status, error: str
    ) -> SendResult:
        self._metrics.failed.labels(channel.name, status.value).inc()
        log.warning(
            "notification_failed",
            channel=channel.name,
            kind=notification.kind,
            transient=status is Status.TRANSIENT,
            error=error,
        )
        return SendResult(notification, channel.name, status, error)


def _remaining(notification: Notification, now: datetime) -> float:
    if notification.due is None:
        return 0.0
    return (notification.due - now).total_seconds()


def _entry(notification: Notification, channel: Channel | str) -> str:
    name = channel if isinstance(channel, str) else channel.name
    return f"{notification.kind}/{name}"


def _done(delivery: Delivery) -> set[str]:
    raw = delivery.headers.get(DONE_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode()
    return {k for k in str(raw or "").split(",") if k}


def _errors(results: list[SendResult]) -> str:
    return "; ".join(f"{r.channel}/{r.notification.kind}: {r.error}" for r in results)[:500]
