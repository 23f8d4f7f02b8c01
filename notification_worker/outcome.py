"""What a message's results in its batch mean for the consumer runner: one outcome each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from common.messaging.consumer import ATTEMPT_HEADER
from common.messaging.outcomes import Ack, Defer, Outcome, Park, Retry, Unavailable
from common.observability import get_logger
from notification_worker.progress import Job, Status, errors, progress_headers, remaining
from notification_worker.scheduling import Hold, next_step

__all__ = ["outcome"]

log = get_logger(__name__)


def outcome(job: Job, now: datetime, tiers: Sequence[float]) -> Outcome:
    """Permanent failures park, transient ones retry, a sent-store outage waits without
    spending an attempt (DESIGN.md §4 rule 7), and only then does anything wait its turn."""
    headers = progress_headers(job)
    results = job.results
    permanent = [r for r in results if r.status is Status.PERMANENT]
    if permanent:
        return Park("permanent_failure", errors(permanent), headers)
    transient = [r for r in results if r.status is Status.TRANSIENT]
    if transient:
        return Retry("transient_failure", errors(transient), headers)
    if job.outage:
        # The store is down, not the message: the runner defers it, growing the delay with
        # each hop (its x-outage header), without spending an attempt.
        log.warning("notification_deferred_store_down", error=job.outage, **job.ids())
        return Unavailable("store_unavailable", job.outage[:500], headers)
    if any(r.status is Status.BUSY for r in results):
        # Another delivery of this event holds the claim: look again once it has finished.
        return Defer(min(tiers), headers)
    if job.later:
        step = next_step(min(remaining(n, now) for n in job.later), tiers)
        assert isinstance(step, Hold)
        # All due work succeeded, so the next due notification starts with fresh attempts.
        return Defer(step.delay, {**headers, ATTEMPT_HEADER: 1})
    if results and all(r.status is Status.SKIPPED for r in results):
        return Ack("duplicate")
    return Ack("sent")
