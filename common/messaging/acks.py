"""Acks with as few frames as the channel allows: one ``multiple`` ack per run of settled tags.

Every single ack was a frame, a socket write and broker work; a consumer acking a batch of 200
one by one spent more CPU on acks than on its handler. A ``multiple`` ack settles every
unacked delivery up to its tag on that channel, so it may only be sent for a run in which every
tag is settled. Tags past a gap (an earlier delivery still being handled, or held by a
republish that the broker refuses) wait ``hold`` seconds for the gap to close, then are acked one
by one: nothing waits behind a stuck delivery.

All acks of a channel go out under one lock, in the order they were decided, so a ``multiple``
ack never covers a tag that was acked singly before it (the broker closes the channel on an
unknown tag).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable

from aio_pika.abc import AbstractIncomingMessage

from common.observability import get_logger

__all__ = ["AckBatcher"]

log = get_logger(__name__)

_DONE, _RELEASED = 1, 2


class _ChannelAcks:
    """The delivery tags of one channel, in the order the broker gave them."""

    def __init__(self, channel: object) -> None:
        self.channel = channel
        self.order: deque[int] = deque()
        self.state: dict[int, int] = {}  # settled tags not yet behind the watermark
        self.held: set[int] = set()  # settled, past a gap, not acked yet
        self.lock = asyncio.Lock()


class AckBatcher:
    def __init__(self, hold: float = 0.05) -> None:
        self._hold = hold
        self._current: _ChannelAcks | None = None
        self._flush: asyncio.Task[None] | None = None

    def received(self, message: AbstractIncomingMessage) -> None:
        """Note a delivery as it arrives (tags grow on a channel; a new channel starts over)."""
        channel = _channel_of(message)
        if channel is None or message.delivery_tag is None:
            return
        if self._current is None or self._current.channel is not channel:
            self._current = _ChannelAcks(channel)
        self._current.order.append(message.delivery_tag)

    def release(self, message: AbstractIncomingMessage) -> None:
        """A delivery settled otherwise, after its nack was sent: no ack may name it, none must
        wait for it."""
        acks = self._acks_for(message)
        if acks is not None and message.delivery_tag is not None:
            acks.state[message.delivery_tag] = _RELEASED

    async def ack(self, messages: Iterable[AbstractIncomingMessage]) -> None:
        by_channel: dict[int, list[AbstractIncomingMessage]] = {}
        strays: list[AbstractIncomingMessage] = []
        for message in messages:
            acks = self._acks_for(message)
            if acks is None or message.delivery_tag is None:
                strays.append(message)
            else:
                by_channel.setdefault(id(acks), []).append(message)
        for message in strays:  # its channel is gone or was never tracked: ack it alone
            await _ack_one(message)
        acks = self._current
        if acks is None or id(acks) not in by_channel:
            return
        async with acks.lock:
            for message in by_channel[id(acks)]:
                assert message.delivery_tag is not None
                acks.state[message.delivery_tag] = _DONE
            watermark = _advance(acks)
            acks.held.update(t for t, s in acks.state.items() if s == _DONE)
            if watermark is not None:
                await _send(acks, watermark, multiple=True)
        if acks.held and (self._flush is None or self._flush.done()):
            self._flush = asyncio.create_task(self._flush_held(acks))

    async def close(self) -> None:
        """Ack what is held now (a graceful stop acks everything it finished), then stop."""
        if self._flush is not None:
            self._flush.cancel()
            with contextlib.suppress(BaseException):
                await self._flush
        if self._current is not None and self._current.held:
            await self._ack_held(self._current)

    def _acks_for(self, message: AbstractIncomingMessage) -> _ChannelAcks | None:
        acks = self._current
        if acks is None or _channel_of(message) is not acks.channel:
            return None
        return acks

    async def _flush_held(self, acks: _ChannelAcks) -> None:
        await asyncio.sleep(self._hold)
        await self._ack_held(acks)

    @staticmethod
    async def _ack_held(acks: _ChannelAcks) -> None:
        async with acks.lock:
            for tag in sorted(acks.held):
                # Acked singly: a later multiple ack must not name it, so it counts as released.
                acks.state[tag] = _RELEASED
                await _send(acks, tag, multiple=False)
            acks.held.clear()
            _advance(acks)


def _advance(acks: _ChannelAcks) -> int | None:
    """Pop the run of settled tags at the front; the highest one a multiple ack may name."""
    watermark = None
    while acks.order and acks.order[0] in acks.state:
        tag = acks.order.popleft()
        if acks.state.pop(tag) == _DONE:
            watermark = tag
            acks.held.discard(tag)
    return watermark


async def _send(acks: _ChannelAcks, tag: int, *, multiple: bool) -> None:
    try:
        await acks.channel.basic_ack(delivery_tag=tag, multiple=multiple)  # type: ignore[attr-defined]
    except Exception as exc:
        # The channel died under us; the broker redelivers and the idempotent effect absorbs it.
        log.warning("ack_failed", delivery_tag=tag, multiple=multiple, error=repr(exc))


async def _ack_one(message: AbstractIncomingMessage) -> None:
    try:
        await message.ack()
    except Exception as exc:
        log.warning("ack_failed", event_id=message.message_id, error=repr(exc))


def _channel_of(message: AbstractIncomingMessage) -> object | None:
    try:
        return message.channel
    except Exception:  # aio-pika raises once the channel is closed
        return None
