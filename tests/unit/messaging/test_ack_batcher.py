"""AckBatcher against a channel that keeps the broker's books: a multiple ack settles every
unacked tag up to its own, and an ack of an unknown tag closes the channel."""

from __future__ import annotations

import asyncio
import random

import pytest

from common.messaging.acks import AckBatcher


class BrokerChannel:
    def __init__(self) -> None:
        self.unacked: set[int] = set()
        self.handled: set[int] = set()  # what the application has finished with
        self.frames: list[tuple[int, bool]] = []
        self.is_closed = False
        self.next_tag = 1

    def deliver(self) -> FakeMessage:
        tag = self.next_tag
        self.next_tag += 1
        self.unacked.add(tag)
        return FakeMessage(self, tag)

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self.is_closed:
            raise RuntimeError("channel closed")
        self.frames.append((delivery_tag, multiple))
        covered = {t for t in self.unacked if t <= delivery_tag} if multiple else {delivery_tag}
        if not multiple and delivery_tag not in self.unacked:
            self.is_closed = True
            raise AssertionError(f"PRECONDITION_FAILED - unknown delivery tag {delivery_tag}")
        unfinished = covered - self.handled
        assert not unfinished, f"acked deliveries still being handled: {sorted(unfinished)}"
        self.unacked -= covered


class FakeMessage:
    def __init__(self, channel: BrokerChannel, tag: int) -> None:
        self.channel = channel
        self.delivery_tag = tag
        self.message_id = f"m{tag}"

    async def ack(self) -> None:
        await self.channel.basic_ack(self.delivery_tag)


def _received(batcher: AckBatcher, channel: BrokerChannel, n: int) -> list[FakeMessage]:
    messages = [channel.deliver() for _ in range(n)]
    for m in messages:
        batcher.received(m)  # type: ignore[arg-type]
    return messages


async def _settle(batcher: AckBatcher, channel: BrokerChannel, messages: list[FakeMessage]):
    channel.handled.update(m.delivery_tag for m in messages)
    await batcher.ack(messages)  # type: ignore[arg-type]


async def test_a_batch_settled_in_order_is_acked_with_one_frame():
    channel, batcher = BrokerChannel(), AckBatcher()
    messages = _received(batcher, channel, 200)
    await _settle(batcher, channel, messages)
    assert channel.frames == [(200, True)]
    assert not channel.unacked


async def test_a_later_batch_finishing_first_waits_for_the_earlier_one_then_both_go_at_once():
    channel, batcher = BrokerChannel(), AckBatcher(hold=5.0)
    first, second = _received(batcher, channel, 10), _received(batcher, channel, 10)
    await _settle(batcher, channel, second)
    assert channel.frames == []  # a multiple ack now would cover the first batch, still running
    await _settle(batcher, channel, first)
    assert channel.frames == [(20, True)]
    assert not channel.unacked


async def test_deliveries_past_a_stuck_one_are_acked_singly_after_the_hold():
    channel, batcher = BrokerChannel(), AckBatcher(hold=0.01)
    stuck, *rest = _received(batcher, channel, 5)
    await _settle(batcher, channel, rest)
    await asyncio.wait_for(_until(lambda: len(channel.unacked) == 1), 2.0)
    assert channel.unacked == {stuck.delivery_tag}
    assert all(not multiple for _, multiple in channel.frames)
    # The stuck one settles later; no ack names a tag twice.
    await _settle(batcher, channel, [stuck])
    assert not channel.unacked
    await batcher.close()


async def test_a_released_delivery_neither_blocks_the_run_nor_is_acked():
    channel, batcher = BrokerChannel(), AckBatcher(hold=5.0)
    messages = _received(batcher, channel, 4)
    batcher.release(messages[0])  # type: ignore[arg-type]
    channel.unacked.discard(messages[0].delivery_tag)  # the nack settled it at the broker
    await _settle(batcher, channel, messages[1:])
    assert channel.frames == [(4, True)]


async def test_a_new_channel_starts_over_and_an_old_channels_message_is_acked_alone():
    old, batcher = BrokerChannel(), AckBatcher(hold=5.0)
    stale = _received(batcher, old, 3)
    new = BrokerChannel()
    fresh = _received(batcher, new, 3)
    await _settle(batcher, new, fresh)
    assert new.frames == [(3, True)]
    await _settle(batcher, old, stale[:1])
    assert old.frames == [(1, False)]


@pytest.mark.parametrize("seed", range(20))
async def test_any_interleaving_acks_every_settled_delivery_once_and_nothing_unsettled(seed):
    rng = random.Random(seed)
    channel, batcher = BrokerChannel(), AckBatcher(hold=0.001)
    pending: list[FakeMessage] = []
    for _ in range(60):
        if rng.random() < 0.5:
            pending += _received(batcher, channel, rng.randint(1, 8))
        if pending and rng.random() < 0.6:
            rng.shuffle(pending)
            cut = rng.randint(1, len(pending))
            take, pending = pending[:cut], pending[cut:]
            await _settle(batcher, channel, take)
        if rng.random() < 0.2:
            await asyncio.sleep(0.002)  # lets a hold expire now and then
    await _settle(batcher, channel, pending)
    await asyncio.wait_for(_until(lambda: not channel.unacked), 2.0)
    assert not channel.is_closed
    await batcher.close()


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.001)


async def test_a_graceful_close_acks_what_was_held_past_a_gap():
    channel, batcher = BrokerChannel(), AckBatcher(hold=60.0)
    stuck, *rest = _received(batcher, channel, 4)
    await _settle(batcher, channel, rest)
    assert channel.frames == []  # held, waiting for the gap to close
    await batcher.close()
    assert channel.unacked == {stuck.delivery_tag}
