"""Carrying out a batch's outcomes: acks, retry tiers, deferrals and the parking lot.

A copy goes to its tier or the parking lot with a confirm before its original is acked; a copy
the broker does not confirm keeps its original unacked and is republished with backoff for as
long as the original's channel lives: never a requeue loop (DESIGN.md §4 rule 3). Retries spend
attempts; an outage (``Unavailable``) waits in the delay tiers without spending one (rule 7).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from aio_pika.abc import AbstractIncomingMessage

from common.messaging.acks import AckBatcher
from common.messaging.deliveries import (
    ATTEMPT_HEADER,
    LAST_ERROR_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    OUTAGE_HEADER,
    PARK_REASON_HEADER,
    PARKED_AT_HEADER,
    SOURCE_QUEUE_HEADER,
    ConsumerMetrics,
    attempt_of,
    int_header,
)
from common.messaging.outcomes import Ack, Defer, Outcome, Park, Retry, Unavailable
from common.messaging.publisher import ConfirmingPublisher, OutgoingMessage
from common.messaging.topology import ConsumerQueue
from common.observability import get_logger

__all__ = ["OUTAGE_MAX_DELAY", "Settlement"]

log = get_logger(__name__)

# An outage defers through the tiers up to this delay, then stays there.
OUTAGE_MAX_DELAY = 60.0


class Settlement:
    def __init__(
        self,
        spec: ConsumerQueue,
        metrics: ConsumerMetrics,
        acks: AckBatcher,
        *,
        max_attempts: int,
        republish_backoff: tuple[float, float],
        stopped: asyncio.Event,
        stopping: Callable[[], bool],
    ) -> None:
        self._spec = spec
        self._metrics = metrics
        self._acks = acks
        self._max_attempts = max_attempts
        self._republish_backoff = republish_backoff
        self._stopped = stopped
        self._stopping = stopping
        ordered = sorted(spec.retry_delays)
        self._outage_delays = [d for d in ordered if d <= OUTAGE_MAX_DELAY] or ordered[:1]
        self.publisher: ConfirmingPublisher | None = None

    async def settle(self, results: list[tuple[AbstractIncomingMessage, str, Outcome]]) -> None:
        to_publish: list[tuple[AbstractIncomingMessage, str, Outcome, OutgoingMessage]] = []
        to_ack: list[AbstractIncomingMessage] = []
        for message, event_type, outcome in results:
            if isinstance(outcome, Retry) and attempt_of(message) >= self._max_attempts:
                outcome = Park(
                    "attempts_exhausted",
                    f"{outcome.reason}: {outcome.error}"[:500],
                    outcome.headers,
                )
            if isinstance(outcome, Ack):
                to_ack.append(message)
                self._metrics.consumed.labels(event_type, outcome.label).inc()
            else:
                to_publish.append((message, event_type, outcome, self._forward(message, outcome)))
        await self._acks.ack(to_ack)
        if not to_publish:
            return
        backoff, max_backoff = self._republish_backoff
        while True:
            failed = await self._republish(to_publish)
            if not failed:
                return
            # The broker did not take these copies: keep each original unacked (a nack with
            # requeue would come straight back: a loop) and republish it after a growing pause,
            # for as long as its channel lives. A closed channel has already handed it back to
            # the broker; a stopping runner hands it back to the queue for whoever consumes next.
            self._metrics.republish_failures.inc(len(failed))
            alive = [p for p in failed if _channel_open(p[0])]
            if not alive:
                return
            if self._stopping():
                for message, *_ in alive:
                    # The nack goes out first: until it has, the tag blocks every multiple ack
                    # (a multiple ack sent before it would settle this message as done).
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
                    self._acks.release(message)
                return
            log.warning(
                "republish_unconfirmed",
                queue=self._spec.name,
                count=len(alive),
                retry_in=backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), backoff)
            backoff = min(backoff * 2, max_backoff)
            to_publish = alive

    async def _republish(
        self, to_publish: list[tuple[AbstractIncomingMessage, str, Outcome, OutgoingMessage]]
    ) -> list[tuple[AbstractIncomingMessage, str, Outcome, OutgoingMessage]]:
        """Publish the copies, ack the originals of the confirmed ones; return the others."""
        assert self.publisher is not None
        try:
            published = await self.publisher.publish_many([p[3] for p in to_publish])
        except Exception as exc:
            log.warning("republish_failed", error=repr(exc))
            published = []
        ok_ids = {id(p[3]) for p, r in zip(to_publish, published, strict=False) if r.ok}
        failed = [p for p in to_publish if id(p[3]) not in ok_ids]
        await self._acks.ack(p[0] for p in to_publish if id(p[3]) in ok_ids)
        for message, event_type, outcome, outgoing in to_publish:
            if id(outgoing) not in ok_ids:
                continue
            if isinstance(outcome, Retry):
                label = "retried"
                self._metrics.retried.labels(outgoing.routing_key.rsplit(".", 1)[-1]).inc()
                log.info(
                    "event_retried",
                    event_id=message.message_id,
                    reason=outcome.reason,
                    error=outcome.error,
                    tier=outgoing.routing_key,
                )
            elif isinstance(outcome, Park):
                label = "parked"
                self._metrics.parked.labels(outcome.reason).inc()
                log.warning(
                    "event_parked",
                    event_id=message.message_id,
                    reason=outcome.reason,
                    error=outcome.error,
                )
            elif isinstance(outcome, Unavailable):
                label = "unavailable"
                self._metrics.unavailable.labels(outcome.reason).inc()
                log.info(
                    "event_deferred_dependency_down",
                    event_id=message.message_id,
                    reason=outcome.reason,
                    error=outcome.error,
                    tier=outgoing.routing_key,
                )
            else:
                label = "deferred"
            self._metrics.consumed.labels(event_type, label).inc()
        return failed

    def _forward(self, message: AbstractIncomingMessage, outcome: Outcome) -> OutgoingMessage:
        headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-death")}
        headers.pop("x-delivery-count", None)
        attempt = attempt_of(message)
        if not isinstance(outcome, Unavailable):
            headers.pop(OUTAGE_HEADER, None)  # the outage is over: the next one starts small
        if isinstance(outcome, Retry):
            tier = min(attempt, len(self._spec.retry_delays)) - 1
            target = self._spec.retry_queue(self._spec.retry_delays[tier])
            headers.update(outcome.headers)
            headers[ATTEMPT_HEADER] = attempt + 1
            headers[LAST_ERROR_HEADER] = f"{outcome.reason}: {outcome.error}"[:500]
        elif isinstance(outcome, Park):
            target = self._spec.dlq
            headers.update(outcome.headers)
            headers[PARK_REASON_HEADER] = outcome.reason
            headers[LAST_ERROR_HEADER] = outcome.error[:500]
            headers[ATTEMPT_HEADER] = attempt
            headers[PARKED_AT_HEADER] = datetime.now(UTC).isoformat()
            headers[SOURCE_QUEUE_HEADER] = self._spec.name
            headers.setdefault(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key or "")
        elif isinstance(outcome, Defer):
            target = self._spec.retry_queue(outcome.delay)
            headers.update(outcome.headers)
        elif isinstance(outcome, Unavailable):
            # Not the message's fault: the attempt count stays as it is (rule 7).
            hops = max(0, int_header(headers.get(OUTAGE_HEADER), default=0))
            delay = self._outage_delays[min(hops, len(self._outage_delays) - 1)]
            target = self._spec.retry_queue(delay)
            headers.update(outcome.headers)
            headers[OUTAGE_HEADER] = hops + 1
            headers[LAST_ERROR_HEADER] = f"{outcome.reason}: {outcome.error}"[:500]
        else:  # pragma: no cover - Ack never forwards
            raise AssertionError(outcome)
        return OutgoingMessage(
            body=message.body,
            routing_key=target,
            message_id=message.message_id or "",
            event_type=message.type or "",
            timestamp=message.timestamp or datetime.now(UTC),
            headers=headers,
            exchange="",
        )


def _channel_open(message: AbstractIncomingMessage) -> bool:
    """Whether the channel this message came on still lives (only it can ack the message)."""
    try:
        channel = message.channel  # aio-pika raises once that channel is closed
    except Exception:
        return False
    return not getattr(channel, "is_closed", False)
