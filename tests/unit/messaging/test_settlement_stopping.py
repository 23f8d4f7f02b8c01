"""A stopping consumer hands back a delivery whose retry copy the broker refused: its nack must
reach the broker before any ``multiple`` ack could cover its tag (DESIGN.md §4 rules 2 and 4).

The channel double keeps the broker's books: a multiple ack settles every unacked tag up to its
own, so an ack sent while the refused delivery is still unacked at the broker would settle it as
done, and the event would be lost instead of redelivered.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from common.messaging.acks import AckBatcher
from common.messaging.deliveries import ConsumerMetrics
from common.messaging.outcomes import Retry
from common.messaging.publisher import PublishResult
from common.messaging.settlement import Settlement
from common.messaging.topology import ConsumerQueue
from common.observability import Metrics


class BrokerChannel:
    def __init__(self) -> None:
        self.unacked: set[int] = set()
        self.acked: set[int] = set()
        self.requeued: list[int] = []
        self.is_closed = False

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        covered = {t for t in self.unacked if t <= delivery_tag} if multiple else {delivery_tag}
        self.acked |= covered
        self.unacked -= covered

    def basic_nack(self, delivery_tag: int) -> None:
        assert delivery_tag in self.unacked, f"PRECONDITION_FAILED - unknown tag {delivery_tag}"
        self.unacked.discard(delivery_tag)
        self.requeued.append(delivery_tag)


class Delivery:
    def __init__(self, channel: BrokerChannel, tag: int) -> None:
        channel.unacked.add(tag)
        self.channel = channel
        self.delivery_tag = tag
        self.message_id = f"m{tag}"
        self.headers: dict[str, Any] = {}
        self.body = b"{}"
        self.routing_key = "order.created"
        self.type = "OrderCreated"
        self.timestamp = datetime.now(UTC)
        # What the consumer's other workers do while this nack is on its way to the broker.
        self.during_nack: list[Any] = []

    async def ack(self) -> None:
        await self.channel.basic_ack(self.delivery_tag)

    async def nack(self, requeue: bool = True) -> None:
        for step in self.during_nack:
            await step()
        self.channel.basic_nack(self.delivery_tag)


class RefusingPublisher:
    async def publish_many(self, messages: list[Any]) -> list[PublishResult]:
        return [PublishResult(m.message_id, ok=False, error="nack") for m in messages]


def _settlement(acks: AckBatcher) -> Settlement:
    settlement = Settlement(
        ConsumerQueue("q.settlement-stopping"),
        ConsumerMetrics(Metrics("t")),
        acks,
        max_attempts=5,
        republish_backoff=(0.01, 0.01),
        stopped=asyncio.Event(),
        stopping=lambda: True,
    )
    settlement.publisher = RefusingPublisher()  # type: ignore[assignment]
    return settlement


async def test_a_refused_copy_is_nacked_before_a_later_delivery_can_ack_past_it():
    channel, acks = BrokerChannel(), AckBatcher(hold=5.0)
    refused, later = Delivery(channel, 1), Delivery(channel, 2)
    for delivery in (refused, later):
        acks.received(delivery)  # type: ignore[arg-type]
    # Another batch finishes (the later delivery is handled) while the nack is in flight.
    refused.during_nack.append(lambda: acks.ack([later]))  # type: ignore[list-item]

    await _settlement(acks).settle([(refused, "OrderCreated", Retry("boom", "x"))])  # type: ignore[list-item]
    await acks.close()

    assert channel.requeued == [1], "the refused delivery must go back to the queue"
    assert 1 not in channel.acked, "a multiple ack settled the refused delivery as done"
    assert channel.acked == {2}
    assert not channel.unacked
