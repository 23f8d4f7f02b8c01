"""Claim, send and record: a batch's sends through the sent store and the channels.

A batch asks the sent store once for all its claims and once for all its records (one
script call each). Channels send concurrently and each has its own bound on sends in
flight and its own timeout, so a slow channel delays only its own sends (and the acks of its
batch, up to the channel's timeout). A send the channel accepted but Redis would not record is
never sent again because Redis blinked: it stays carried as unrecorded (progress.py).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from common import tracing
from common.observability import get_logger
from notification_worker.metrics import NotificationMetrics
from notification_worker.notifiers import Channel, PermanentSendError, TransientSendError
from notification_worker.planning import Notification
from notification_worker.progress import Job, SendResult, Status, entry
from notification_worker.sent_store import (
    Claim,
    ClaimRequest,
    RecordRequest,
    SentStore,
    is_outage,
)
from notification_worker.templates import render

__all__ = ["RECORD_ATTEMPTS", "Send", "Sender"]

log = get_logger(__name__)

RECORD_ATTEMPTS = 5


@dataclass
class Send:
    job: Job
    notification: Notification
    channel: Channel
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


class Sender:
    def __init__(
        self,
        channels: Sequence[Channel],
        store: SentStore,
        metrics: NotificationMetrics,
        *,
        claim_seconds: float,
        channel_concurrency: int,
        record_backoff: float,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._claim_seconds = claim_seconds
        self._record_backoff = record_backoff
        self._limits = {c.name: asyncio.Semaphore(channel_concurrency) for c in channels}

    async def claim(self, sends: list[Send]) -> list[Send]:
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
                send.job.mark_outage(f"store: {answer!r}")
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
                send.job.done.add(entry(send.notification, send.channel))
            elif answer is Claim.BUSY:
                send.job.results.append(
                    SendResult(send.notification, send.channel.name, Status.BUSY)
                )
            else:
                claimed.append(send)
        return claimed

    async def send(self, send: Send) -> bool:
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

    async def record(self, jobs: list[Job], sent: list[Send]) -> None:
        """Records the batch's sends, and the sends carried unrecorded from an earlier hop, in
        one round trip, retried briefly in place; what still fails is carried on unrecorded."""
        carried = [(job, e, token) for job in jobs for e, token in job.unrecorded.items()]
        for send in sent:
            done = entry(send.notification, send.channel)
            send.job.done.add(done)
            send.job.unrecorded[done] = send.token
            send.job.results.append(SendResult(send.notification, send.channel.name, Status.SENT))
        requests: list[tuple[Job, str, RecordRequest]] = []
        for job, done, token in carried:
            kind, _, channel = done.partition("/")
            notification = next((n for n in job.plan if n.kind == kind), None)
            if notification is None:
                job.unrecorded.pop(done)  # no longer a notification of this event
                continue
            requests.append((job, done, _record_request(notification, channel, token)))
        for send in sent:
            done = entry(send.notification, send.channel)
            requests.append(
                (send.job, done, _record_request(send.notification, send.channel.name, send.token))
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
                            job.mark_outage(f"record: {exc!r}")
                        else:
                            job.results.append(
                                SendResult(
                                    job.plan[0], "store", Status.TRANSIENT, f"record: {exc!r}"
                                )
                            )
                return
            for job, done, _ in requests:
                job.unrecorded.pop(done, None)
            return

    async def _release(self, send: Send) -> None:
        try:
            await self._store.release(send.notification.key, send.channel.name, send.token)
        except Exception as exc:
            # The lease expires on its own; a retry before then just waits as "busy".
            log.warning("claim_release_failed", channel=send.channel.name, error=repr(exc))

    def _failed(self, send: Send, status: Status, error: str) -> None:
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


def _record_request(notification: Notification, channel: str, token: str) -> RecordRequest:
    return RecordRequest(
        notification.key, channel, token, notification.order_id, notification.audit_field(channel)
    )


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
