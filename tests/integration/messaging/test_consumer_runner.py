"""The shared consumer runner against the real RabbitMQ: acks, retry tiers, parking, deferral."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import aio_pika
import pytest

from common.events import OrderCreatedV1, encode_envelope, new_envelope
from common.messaging.consumer import ConsumerMetrics, ConsumerRunner, Delivery
from common.messaging.outcomes import (
    Ack,
    Defer,
    DependencyUnavailableError,
    Outcome,
    Park,
    Retry,
    Unavailable,
)
from common.messaging.topology import apply_topology
from common.observability import Metrics
from common.testing import wait_until

pytestmark = pytest.mark.integration


def event_body(order_id: uuid.UUID | None = None) -> tuple[str, bytes]:
    data = OrderCreatedV1(
        order_id=order_id or uuid.uuid4(),
        customer_id="c",
        product_id="p",
        quantity=1,
        total_amount=Decimal("1.00"),
        currency="USD",
        status="created",
        created_at=datetime.now(UTC),
    )
    envelope = new_envelope(data, producer="test", correlation_id="corr")
    return str(envelope.event_id), encode_envelope(envelope)


class ScriptedHandler:
    """Answers each event with the next outcome of its script, recording when it ran."""

    def __init__(self, script: list[Outcome | Exception]) -> None:
        self.script = script
        self.calls: list[tuple[float, int]] = []
        self.headers: list[dict] = []

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> Sequence[Outcome]:
        outcomes = []
        for delivery in deliveries:
            self.calls.append((time.monotonic(), delivery.attempt))
            self.headers.append(delivery.headers)
            answer = self.script[min(len(self.calls) - 1, len(self.script) - 1)]
            if isinstance(answer, Exception):
                raise answer
            outcomes.append(answer)
        return outcomes


class FirstAttemptFails(ScriptedHandler):
    """A transient failure on the first attempt only (a redelivered original fails again)."""

    def __init__(self) -> None:
        super().__init__([])

    async def handle_batch(self, deliveries: Sequence[Delivery]) -> Sequence[Outcome]:
        for delivery in deliveries:
            self.calls.append((time.monotonic(), delivery.attempt))
        return [Retry("flaky", "503") if d.attempt == 1 else Ack() for d in deliveries]


async def publish(amqp, exchange: str, body: bytes, message_id: str, **kwargs) -> None:
    channel = await amqp.channel()
    ex = await channel.get_exchange(exchange)
    await ex.publish(
        aio_pika.Message(
            body,
            message_id=message_id,
            content_type=kwargs.pop("content_type", "application/json"),
            type="OrderCreated",
            **kwargs,
        ),
        routing_key="order.created",
    )
    await channel.close()


async def queue_depth(amqp, name: str) -> int:
    channel = await amqp.channel()
    queue = await channel.declare_queue(name, passive=True)
    await channel.close()
    return queue.declaration_result.message_count


async def run_with(amqp, cleanup_topology, handler, **kwargs):
    topology = cleanup_topology.topology()
    channel = await amqp.channel()
    await apply_topology(channel, topology)
    await channel.close()
    spec = topology.queue(cleanup_topology.analytics_queue)
    runner = ConsumerRunner(amqp, spec, handler, ConsumerMetrics(Metrics("t")), **kwargs)
    await runner.start()
    return topology, spec, runner


async def test_transient_failures_go_through_the_tiers_then_succeed(amqp, cleanup_topology):
    handler = ScriptedHandler([Retry("db down"), Retry("db down"), Ack()])
    topology, spec, runner = await run_with(amqp, cleanup_topology, handler, max_attempts=5)
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        await wait_until(lambda: _async(len(handler.calls) >= 3), timeout=10, message="3 calls")
        (t1, a1), (t2, a2), (t3, a3) = handler.calls[:3]
        assert (a1, a2, a3) == (1, 2, 3)
        assert t2 - t1 >= 0.18  # first tier: 0.2 s
        assert t3 - t2 >= 0.45  # second tier: 0.5 s
        await wait_until(lambda: _depth_zero(amqp, spec.name), timeout=5, message="acked")
        assert await queue_depth(amqp, spec.dlq) == 0
    finally:
        await runner.stop()


async def test_exhausted_retries_are_parked_with_reason_and_attempts(amqp, cleanup_topology):
    handler = ScriptedHandler([Retry("timeout", "upstream 503")])
    topology, spec, runner = await run_with(amqp, cleanup_topology, handler, max_attempts=2)
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        parked = await _get_one(amqp, spec.dlq, timeout=10)
        assert parked.message_id == event_id
        assert parked.headers["x-park-reason"] == "attempts_exhausted"
        assert "upstream 503" in str(parked.headers["x-last-error"])
        assert parked.headers["x-attempt"] == 2
        assert parked.headers["x-source-queue"] == spec.name
        assert json.loads(parked.body)["event_id"] == event_id
        assert len(handler.calls) == 2
    finally:
        await runner.stop()


@pytest.mark.parametrize(
    ("body", "kwargs", "reason"),
    [
        (b"not json", {}, "invalid_payload"),
        (b'{"event_id": "x"}', {}, "invalid_payload"),
        (b"{}", {"content_type": "text/plain"}, "invalid_content_type"),
    ],
)
async def test_poison_is_parked_at_once_and_the_consumer_keeps_going(
    amqp, cleanup_topology, body, kwargs, reason
):
    handler = ScriptedHandler([Ack()])
    topology, spec, runner = await run_with(amqp, cleanup_topology, handler)
    try:
        await publish(amqp, topology.exchange, body, "poison-1", **kwargs)
        parked = await _get_one(amqp, spec.dlq, timeout=10)
        assert parked.headers["x-park-reason"] == reason
        event_id, good = event_body()
        await publish(amqp, topology.exchange, good, event_id)
        await wait_until(lambda: _async(len(handler.calls) == 1), timeout=10, message="good one")
    finally:
        await runner.stop()


async def test_permanent_failure_is_parked_without_retry(amqp, cleanup_topology):
    handler = ScriptedHandler([Park("rejected", "HTTP 400")])
    topology, spec, runner = await run_with(amqp, cleanup_topology, handler)
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        parked = await _get_one(amqp, spec.dlq, timeout=10)
        assert parked.headers["x-park-reason"] == "rejected"
        assert len(handler.calls) == 1
    finally:
        await runner.stop()


async def test_unknown_event_types_are_acked_not_parked(amqp, cleanup_topology):
    handler = ScriptedHandler([Ack()])
    topology, spec, runner = await run_with(amqp, cleanup_topology, handler)
    try:
        _, body = event_body()
        future = json.loads(body)
        future["event_type"] = "OrderTeleported"
        await publish(amqp, topology.exchange, json.dumps(future).encode(), "future-1")
        await wait_until(lambda: _depth_zero(amqp, spec.name), timeout=5, message="acked")
        await asyncio.sleep(0)  # let the ack land before checking the parking lot
        assert await queue_depth(amqp, spec.dlq) == 0
        assert handler.calls == []
    finally:
        await runner.stop()


async def test_deferred_message_comes_back_after_its_tier_without_an_attempt(
    amqp, cleanup_topology
):
    handler = ScriptedHandler([Defer(0.5, {"x-due": "soon"}), Ack()])
    topology, _, runner = await run_with(amqp, cleanup_topology, handler)
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        await wait_until(lambda: _async(len(handler.calls) >= 2), timeout=10, message="2 calls")
        (t1, a1), (t2, a2) = handler.calls[:2]
        assert a1 == a2 == 1
        assert t2 - t1 >= 0.45
    finally:
        await runner.stop()


async def _async(value: bool) -> bool:
    return value


async def _depth_zero(amqp, name: str) -> bool:
    return await queue_depth(amqp, name) == 0


async def _get_one(amqp, queue_name: str, timeout: float) -> aio_pika.abc.AbstractIncomingMessage:
    channel = await amqp.channel()
    queue = await channel.get_queue(queue_name, ensure=False)

    async def fetch():
        return await queue.get(no_ack=True, fail=False)

    message = await wait_until(fetch, timeout=timeout, message=f"a message in {queue_name}")
    await channel.close()
    return message


async def test_a_parked_copy_carries_the_progress_headers_of_the_last_answer(
    amqp, cleanup_topology
):
    progress = {"x-progress": "step-1,step-2"}
    handler = ScriptedHandler(
        [Retry("flaky", "503", {"x-progress": "step-1"}), Park("rejected", "400", progress)]
    )
    topology, spec, runner = await run_with(amqp, cleanup_topology, handler, max_attempts=5)
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        parked = await _get_one(amqp, spec.dlq, timeout=10)
        assert parked.headers["x-progress"] == "step-1,step-2"
        assert parked.headers["x-park-reason"] == "rejected"
    finally:
        await runner.stop()


async def test_a_copy_parked_out_of_attempts_carries_the_progress_of_its_last_retry(
    amqp, cleanup_topology
):
    handler = ScriptedHandler([Retry("flaky", "503", {"x-progress": "step-1"})])
    topology, spec, runner = await run_with(amqp, cleanup_topology, handler, max_attempts=1)
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        parked = await _get_one(amqp, spec.dlq, timeout=10)
        assert parked.headers["x-progress"] == "step-1"
        assert parked.headers["x-park-reason"] == "attempts_exhausted"
    finally:
        await runner.stop()


async def test_a_dependency_outage_longer_than_every_attempt_defers_and_never_parks(
    amqp, cleanup_topology
):
    """Rule 7: six outage answers with two attempts allowed; the attempt never grows."""
    down = DependencyUnavailableError("database unavailable")
    handler = ScriptedHandler(
        [Unavailable("database_unavailable", "refused"), down, down, down, down, down, Ack()]
    )
    topology, spec, runner = await run_with(amqp, cleanup_topology, handler, max_attempts=2)
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        await wait_until(lambda: _async(len(handler.calls) >= 7), timeout=15, message="7 calls")
        assert [attempt for _, attempt in handler.calls] == [1] * 7
        assert [h.get("x-outage") for h in handler.headers] == [None, 1, 2, 3, 4, 5, 6]
        await wait_until(lambda: _depth_zero(amqp, spec.name), timeout=5, message="acked")
        assert await queue_depth(amqp, spec.dlq) == 0
    finally:
        await runner.stop()


async def test_an_outage_between_failures_of_the_message_does_not_refund_or_spend_attempts(
    amqp, cleanup_topology
):
    handler = ScriptedHandler(
        [Retry("bad", "1"), Unavailable("redis_unavailable"), Retry("bad", "2"), Ack()]
    )
    topology, _, runner = await run_with(amqp, cleanup_topology, handler, max_attempts=5)
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        await wait_until(lambda: _async(len(handler.calls) >= 4), timeout=15, message="4 calls")
        assert [attempt for _, attempt in handler.calls] == [1, 2, 2, 3]
        assert "x-outage" not in handler.headers[3]  # the outage count starts over
    finally:
        await runner.stop()


async def test_an_unconfirmed_retry_copy_is_republished_with_backoff_not_redelivered_at_once(
    amqp, cleanup_topology
):
    """Item 8: the retry tier is gone, so the copy is returned unroutable. The original must
    not come straight back (a requeue loop); it waits unacked while the copy is retried."""
    handler = FirstAttemptFails()
    topology, spec, runner = await run_with(
        amqp, cleanup_topology, handler, max_attempts=5, republish_backoff=(0.05, 0.2)
    )
    tier = spec.retry_queue(spec.retry_delays[0])
    channel = await amqp.channel()
    await channel.queue_delete(tier)
    failures = runner._metrics.republish_failures
    try:
        event_id, body = event_body()
        await publish(amqp, topology.exchange, body, event_id)
        await wait_until(
            lambda: _async(len(handler.calls) >= 3 or failures._value.get() >= 3),
            timeout=10,
            message="three unconfirmed republishes",
        )
        assert len(handler.calls) == 1, "the original was redelivered instead of held"
        await channel.declare_queue(tier, durable=True, arguments=spec.retry_arguments(0.2))
        await wait_until(lambda: _async(len(handler.calls) >= 2), timeout=10, message="2 calls")
        assert [attempt for _, attempt in handler.calls] == [1, 2]
        await wait_until(lambda: _depth_zero(amqp, spec.name), timeout=5, message="acked")
        assert await queue_depth(amqp, spec.dlq) == 0
    finally:
        await runner.stop()
        await channel.close()


async def test_a_runner_that_cannot_start_raises_and_leaves_no_channel_open(amqp, cleanup_topology):
    topology = cleanup_topology.topology()
    spec = topology.queue(cleanup_topology.analytics_queue)  # never declared
    runner = ConsumerRunner(amqp, spec, ScriptedHandler([Ack()]), ConsumerMetrics(Metrics("t")))
    with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
        await runner.run()
    assert all(c is None or c.is_closed for c in (runner._consume_channel, runner._publish_channel))
