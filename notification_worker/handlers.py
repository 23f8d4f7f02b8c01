"""The message handler: plan each event's notifications, send the due ones through every
channel, and turn what happened into one outcome per message for the consumer runner.

A batch of messages asks the sent store once for all its claims and once for all its records
(one pipelined round trip each). Channels send concurrently and each has its own bound on sends
in flight and its own timeout, so a slow channel delays only its own sends (and the acks of its
batch, up to the channel's timeout). Partial progress survives a retry: every (notification,
channel) that succeeded is carried in the message's headers, and the retry skips it.

A send the channel accepted but Redis would not record is never sent again because Redis
blinked: it is carried as done *and* unrecorded (with its claim token) to a retry tier, and the
next copy records it without sending. A Redis outage answers ``Unavailable``: the consumer runner
defers the message without spending an attempt (DESIGN.md §4 rule 7), at growing delays.
"""

from __future__ import annotations

import asyncio
import enum
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common import tracing
from common.events import ContractError, utc_now
from common.messaging.consumer import ATTEMPT_HEADER, Delivery
from common.messaging.outcomes import Ack, Defer, Outcome, Park, Retry, Unavailable
from common.observability import bind_context, get_logger
from notification_worker.metrics import NotificationMetrics
from notification_worker.notifiers import Channel, PermanentSendError, TransientSendError
from notification_worker.planning import Notification, Planner
from notification_worker.scheduling import Hold, next_step
from notification_worker.sent_store import (
    Claim,
    ClaimRequest,
    RecordRequest,
    SentStore,
    is_outage,
)
from notification_worker.templates import render

__all__ = ["DONE_HEADER", "UNRECORDED_HEADER", "NotificationHandler"]

log = get_logger(__name__)

# "kind/channel" sends this message already made or found made; carried through retries,
# deferrals and the parking lot so later hops neither ask the sent store again nor count them
# as duplicates.
DONE_HEADER = "x-notify-done"
# "kind/channel=token" sends made but not yet recorded (Redis refused the record): the next hop
# records them under the same token, without sending.
UNRECORDED_HEADER = "x-notify-unrecorded"
RECORD_ATTEMPTS = 5


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
class _Job:
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

    def ids(self) -> dict[str, str]:
        """For a log line outside ``context()`` (binding costs more than passing them)."""
        return {
            "event_id": str(self.delivery.envelope.event_id),
            "correlation_id": self.delivery.envelope.correlation_id,
        }

    def context(self) -> Any:
        return bind_context(**self.ids())


@dataclass
class _Send:
    job: _Job
    notification: Notification
    channel: Channel
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


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
        record_backoff: float = 0.05,
    ) -> None:
        self._planner = planner
        self._channels = list(channels)
        self._store = store
        self._metrics = metrics
        self._tiers = tuple(tiers)
        self._claim_seconds = claim_seconds
        self._clock = clock
        self._record_backoff = record_backoff
        self._limits = {c.name: asyncio.Semaphore(channel_concurrency) for c in self._channels}

    async def handle(self, delivery: Delivery) -> Outcome:
        """One message as a batch of one."""
        return (await self.handle_batch([delivery]))[0]

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        now = self._clock()
        jobs = [self._prepare(d, now) for d in deliveries]
        live = [j for j in jobs if j.outcome is None]
        sends = [
            _Send(job, n, c)
            for job in live
            for n in job.due
            for c in self._channels
            if _entry(n, c) not in job.done
        ]
        claimed = await self._claim(sends)
        sent = await asyncio.gather(*(self._send(s) for s in claimed))
        await self._record(live, [s for s, ok in zip(claimed, sent, strict=True) if ok])
        await self._update_schedule(live, now)
        for job in live:
            job.outcome = self._outcome(job, now)
        return [j.outcome for j in jobs if j.outcome is not None]

    def _prepare(self, delivery: Delivery, now: datetime) -> _Job:
        job = _Job(delivery)
        try:
            job.plan = self._planner.plan(delivery.envelope, delivery.event, now)
        except ContractError as exc:
            job.outcome = Park("invalid_payload", str(exc)[:500])
            return job
        except Exception as exc:  # a planner bug: let the attempts decide
            job.outcome = Retry("handler_error", repr(exc))
            return job
        if not job.plan:
            job.outcome = Ack("no_template")
            return job
        job.done = _done(delivery)
        job.unrecorded = _unrecorded(delivery)
        job.done.update(job.unrecorded)
        for notification in job.plan:
            if all(_entry(notification, c) in job.done for c in self._channels):
                continue
            if isinstance(next_step(_remaining(notification, now), self._tiers), Hold):
                job.later.append(notification)
            else:
                job.due.append(notification)
        return job

    async def _claim(self, sends: list[_Send]) -> list[_Send]:
        """Claims every send of the batch in one round trip; returns the claimed ones."""
        if not sends:
            return []
        try:
            answers = await self._store.claim_many(
                [ClaimRequest(s.notification.key, s.channel.name, s.token) for s in sends],
                self._claim_seconds,
            )
        except Exception as exc:
            answers = [exc] * len(sends)
        claimed = []
        for send, answer in zip(sends, answers, strict=True):
            if isinstance(answer, Exception) and is_outage(answer):
                self._outage(send.job, f"store: {answer!r}")
                send.job.results.append(
                    SendResult(send.notification, send.channel.name, Status.OUTAGE)
                )
            elif isinstance(answer, Exception):  # a bug or a refused command: spend attempts
                send.job.results.append(
                    SendResult(
                        send.notification,
                        send.channel.name,
                        Status.TRANSIENT,
                        f"store: {answer!r}",
                    )
                )
            elif answer is Claim.SENT:
                self._metrics.skipped_duplicate.labels(send.channel.name).inc()
                log.info(
                    "notification_skipped_duplicate",
                    channel=send.channel.name,
                    kind=send.notification.kind,
                    **send.job.ids(),
                )
                send.job.results.append(
                    SendResult(send.notification, send.channel.name, Status.SKIPPED)
                )
                send.job.done.add(_entry(send.notification, send.channel))
            elif answer is Claim.BUSY:
                send.job.results.append(
                    SendResult(send.notification, send.channel.name, Status.BUSY)
                )
            else:
                claimed.append(send)
        return claimed

    async def _send(self, send: _Send) -> bool:
        """Sends one claimed notification; True when the channel accepted it."""
        notification, channel, job = send.notification, send.channel, send.job
        with job.context():
            async with self._limits[channel.name]:
                message = render(
                    notification.event_type, notification.kind, channel.name, notification.fields
                )
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(channel.timeout):
                        with _send_span(notification, channel.name):
                            await channel.send(notification, message)
                except PermanentSendError as exc:
                    await self._release(send)
                    self._failed(send, Status.PERMANENT, str(exc))
                    return False
                except TransientSendError as exc:
                    await self._release(send)
                    self._failed(send, Status.TRANSIENT, str(exc))
                    return False
                except Exception as exc:  # a timeout or a channel bug: assume it may pass
                    await self._release(send)
                    self._failed(send, Status.TRANSIENT, f"{channel.name}: {exc!r}")
                    return False
            self._metrics.send_seconds.labels(channel.name).observe(time.perf_counter() - started)
            self._metrics.sent.labels(channel.name).inc()
            return True

    async def _record(self, jobs: list[_Job], sent: list[_Send]) -> None:
        """Records the batch's sends, and the sends carried unrecorded from an earlier hop, in
        one round trip, retried briefly in place; what still fails is carried on unrecorded."""
        carried = [(job, entry, token) for job in jobs for entry, token in job.unrecorded.items()]
        for send in sent:
            entry = _entry(send.notification, send.channel)
            send.job.done.add(entry)
            send.job.unrecorded[entry] = send.token
            send.job.results.append(SendResult(send.notification, send.channel.name, Status.SENT))
        requests: list[tuple[_Job, str, RecordRequest]] = []
        for job, entry, token in carried:
            kind, _, channel = entry.partition("/")
            notification = next((n for n in job.plan if n.kind == kind), None)
            if notification is None:
                job.unrecorded.pop(entry)  # no longer a notification of this event
                continue
            requests.append((job, entry, _record_request(notification, channel, token)))
        for send in sent:
            entry = _entry(send.notification, send.channel)
            requests.append(
                (send.job, entry, _record_request(send.notification, send.channel.name, send.token))
            )
        if not requests:
            return
        delay = self._record_backoff
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                await self._store.record_many([r for _, _, r in requests])
            except Exception as exc:
                if attempt < RECORD_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                for job in {id(j): j for j, _, _ in requests}.values():
                    with job.context():
                        log.error(
                            "notification_record_failed",
                            entries=sorted(job.unrecorded),
                            error=repr(exc),
                        )
                        # Carried unrecorded either way, so it is never sent again; only an
                        # outage waits without spending an attempt.
                        if is_outage(exc):
                            self._outage(job, f"record: {exc!r}")
                        else:
                            job.results.append(
                                SendResult(
                                    job.plan[0], "store", Status.TRANSIENT, f"record: {exc!r}"
                                )
                            )
                return
            for job, entry, _ in requests:
                job.unrecorded.pop(entry, None)
            return

    async def _update_schedule(self, jobs: list[_Job], now: datetime) -> None:
        """Keeps the scheduled-notifications gauge; best effort, so Redis never holds a send."""
        for job in jobs:
            if job.outage:
                continue  # Redis is down: each call would only wait for its timeout
            for notification in job.due:
                if notification.due is not None and all(
                    _entry(notification, c) in job.done for c in self._channels
                ):
                    await self._best_effort(self._store.unschedule(notification.key))
            if job.later and not _blocked(job):
                for notification in job.later:
                    assert notification.due is not None
                    await self._best_effort(
                        self._store.mark_scheduled(notification.key, notification.due.timestamp())
                    )

    async def _best_effort(self, call: Any) -> None:
        try:
            await call
        except Exception as exc:
            log.warning("scheduled_mark_failed", error=repr(exc))

    def _outcome(self, job: _Job, now: datetime) -> Outcome:
        headers = self._progress(job)
        results = job.results
        permanent = [r for r in results if r.status is Status.PERMANENT]
        if permanent:
            return Park("permanent_failure", _errors(permanent), headers)
        transient = [r for r in results if r.status is Status.TRANSIENT]
        if transient:
            return Retry("transient_failure", _errors(transient), headers)
        if job.outage:
            # The store is down, not the message: the runner defers it, growing the delay with
            # each hop (its x-outage header), without spending an attempt.
            log.warning("notification_deferred_store_down", error=job.outage, **job.ids())
            return Unavailable("store_unavailable", job.outage[:500], headers)
        if any(r.status is Status.BUSY for r in results):
            # Another delivery of this event holds the claim: look again once it has finished.
            return Defer(min(self._tiers), headers)
        if job.later:
            step = next_step(min(_remaining(n, now) for n in job.later), self._tiers)
            assert isinstance(step, Hold)
            # All due work succeeded, so the next due notification starts with fresh attempts.
            return Defer(step.delay, {**headers, ATTEMPT_HEADER: 1})
        if results and all(r.status is Status.SKIPPED for r in results):
            return Ack("duplicate")
        return Ack("sent")

    def _progress(self, job: _Job) -> dict[str, Any]:
        headers: dict[str, Any] = {DONE_HEADER: ",".join(sorted(job.done))}
        incoming = job.delivery.headers
        if job.unrecorded or UNRECORDED_HEADER in incoming:
            headers[UNRECORDED_HEADER] = ",".join(
                f"{e}={t}" for e, t in sorted(job.unrecorded.items())
            )
        return headers

    def _outage(self, job: _Job, error: str) -> None:
        if not job.outage:
            job.outage = error

    async def _release(self, send: _Send) -> None:
        try:
            await self._store.release(send.notification.key, send.channel.name, send.token)
        except Exception as exc:
            # The lease expires on its own; a retry before then just waits as "busy".
            log.warning("claim_release_failed", channel=send.channel.name, error=repr(exc))

    def _failed(self, send: _Send, status: Status, error: str) -> None:
        channel = send.channel.name
        self._metrics.failed.labels(channel, status.value).inc()
        log.warning(
            "notification_failed",
            channel=channel,
            kind=send.notification.kind,
            transient=status is Status.TRANSIENT,
            error=error,
        )
        send.job.results.append(SendResult(send.notification, channel, status, error))


def _send_span(notification: Notification, channel: str) -> Any:
    """One CLIENT span per send, in the trace of the event it notifies about."""
    if not tracing.enabled():
        return tracing.NO_SPAN
    return tracing.span(
        f"notification send {channel}",
        key=notification.event_id,
        kind=tracing.SpanKind.CLIENT,
        attributes={
            "notification.channel": channel,
            "notification.kind": notification.kind,
            "event.type": notification.event_type,
            "order.id": notification.order_id or "",
        },
    )


def _record_request(notification: Notification, channel: str, token: str) -> RecordRequest:
    return RecordRequest(
        notification.key, channel, token, notification.order_id, notification.audit_field(channel)
    )


def _blocked(job: _Job) -> bool:
    return job.outage != "" or any(
        r.status in (Status.PERMANENT, Status.TRANSIENT, Status.BUSY) for r in job.results
    )


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


def _unrecorded(delivery: Delivery) -> dict[str, str]:
    raw = delivery.headers.get(UNRECORDED_HEADER)
    if isinstance(raw, bytes):
        raw = raw.decode()
    pairs = (item.partition("=") for item in str(raw or "").split(",") if item)
    return {entry: token for entry, _, token in pairs if entry and token}


def _errors(results: list[SendResult]) -> str:
    return "; ".join(f"{r.channel}/{r.notification.kind}: {r.error}" for r in results)[:500]
