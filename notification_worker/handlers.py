"""The message handler: plan each event's notifications, send the due ones through every
channel, and turn what happened into one outcome per message for the consumer runner.

Sending (claim, send, record) is in sending.py, the progress carried in headers in progress.py,
the outcome rules in outcome.py. A Redis outage answers ``Unavailable``: the consumer runner
defers the message without spending an attempt (DESIGN.md §4 rule 7), at growing delays.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from common.events import ContractError
from common.messaging.consumer import Delivery
from common.messaging.outcomes import Ack, Outcome, Park, Retry
from common.observability import get_logger
from common.utc import utc_now
from notification_worker.metrics import NotificationMetrics
from notification_worker.notifiers import Channel
from notification_worker.outcome import outcome
from notification_worker.planning import Planner
from notification_worker.progress import DONE_HEADER, UNRECORDED_HEADER, Job, entry, remaining
from notification_worker.scheduling import Hold, next_step
from notification_worker.sending import Send, Sender
from notification_worker.sent_store import SentStore

__all__ = ["DONE_HEADER", "UNRECORDED_HEADER", "NotificationHandler"]

log = get_logger(__name__)


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
        self._tiers = tuple(tiers)
        self._clock = clock
        self._sender = Sender(
            self._channels,
            store,
            metrics,
            claim_seconds=claim_seconds,
            channel_concurrency=channel_concurrency,
            record_backoff=record_backoff,
        )

    async def handle(self, delivery: Delivery) -> Outcome:
        """One message as a batch of one."""
        return (await self.handle_batch([delivery]))[0]

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> list[Outcome]:
        now = self._clock()
        jobs = [self._prepare(d, now) for d in deliveries]
        live = [j for j in jobs if j.outcome is None]
        sends = [
            Send(job, n, c)
            for job in live
            for n in job.due
            for c in self._channels
            if entry(n, c) not in job.done
        ]
        sender = self._sender
        claimed = await sender.claim(sends)
        sent = await asyncio.gather(*(sender.send(s) for s in claimed))
        await sender.record(live, [s for s, ok in zip(claimed, sent, strict=True) if ok])
        await self._update_schedule(live, now)
        for job in live:
            job.outcome = outcome(job, now, self._tiers)
        return [j.outcome for j in jobs if j.outcome is not None]

    def _prepare(self, delivery: Delivery, now: datetime) -> Job:
        try:
            plan = self._planner.plan(delivery.envelope, delivery.event, now)
        except ContractError as exc:
            return Job(delivery, outcome=Park("invalid_payload", str(exc)[:500]))
        except Exception as exc:  # a planner bug: let the attempts decide
            return Job(delivery, outcome=Retry("handler_error", repr(exc)))
        if not plan:
            return Job(delivery, outcome=Ack("no_template"))
        job = Job.resumed(delivery, plan)
        for notification in job.plan:
            if all(entry(notification, c) in job.done for c in self._channels):
                continue
            if isinstance(next_step(remaining(notification, now), self._tiers), Hold):
                job.later.append(notification)
            else:
                job.due.append(notification)
        return job

    async def _update_schedule(self, jobs: list[Job], now: datetime) -> None:
        """Keeps the scheduled-notifications gauge; best effort, so Redis never holds a send."""
        for job in jobs:
            if job.outage:
                continue  # Redis is down: each call would only wait for its timeout
            for notification in job.due:
                if notification.due is not None and all(
                    entry(notification, c) in job.done for c in self._channels
                ):
                    await self._best_effort(self._store.unschedule(notification.key))
            if job.later and not job.blocked():
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
