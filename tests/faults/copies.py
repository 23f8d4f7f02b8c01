"""Copies of real events published again: a tap queue on the run's exchange keeps what the
relay published, and ``republish`` sends copies of them (same message id, body and headers),
as a relay that crashed before its mark, or a broker redelivery, would.

The tap outlives broker restarts of a chaos run on its own terms: a closed connection is opened
again with a fresh tap queue (the old one died with it), which fills from the ongoing load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue

from tests.e2e.system import RunningSystem

__all__ = ["EventTap"]

TAP_MAX_EVENTS = 5000


class EventTap:
    """``async with EventTap(system) as tap:`` - bound before the load, so it sees its events."""

    def __init__(self, system: RunningSystem) -> None:
        self._system = system
        self._connection: AbstractConnection | None = None
        self.channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._exchange: AbstractExchange | None = None
        self.republished: list[str] = []

    async def __aenter__(self) -> EventTap:
        await self._open()
        return self

    async def _open(self) -> None:
        topology = self._system.topology.topology()
        self._connection = await aio_pika.connect(self._system.admin_url, timeout=10)
        self.channel = await self._connection.channel(publisher_confirms=True)
        # Bounded: a long run keeps only the latest events (the oldest are dropped).
        self._queue = await self.channel.declare_queue(
            exclusive=True, arguments={"x-max-length": TAP_MAX_EVENTS}
        )
        await self._queue.bind(topology.exchange, routing_key="order.#")
        self._exchange = await self.channel.get_exchange(topology.exchange, ensure=False)

    async def usable_channel(self, timeout: float = 60.0) -> AbstractChannel:
        """The tap's channel, opened again (with a fresh tap queue) if the broker closed it."""
        deadline = time.monotonic() + timeout
        while self.channel is None or self.channel.is_closed:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
            try:
                await self._open()
            except (aiormq.exceptions.AMQPError, OSError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        return self.channel

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def republish(self, count: int, copies: int = 1) -> int:
        """Up to ``count`` tapped events, each published ``copies`` more times; how many."""
        await self.usable_channel()
        assert self._queue is not None and self._exchange is not None
        taken = 0
        deadline = time.monotonic() + 15  # a tap opened again fills from the load
        while taken < count:
            message = await self._queue.get(no_ack=True, fail=False, timeout=5)
            if message is None:
                if taken or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
                continue
            taken += 1
            for _ in range(copies):
                await self._exchange.publish(
                    aio_pika.Message(
                        message.body,
                        content_type=message.content_type,
                        message_id=message.message_id,
                        type=message.type,
                        headers=dict(message.headers or {}),
                        timestamp=message.timestamp,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=message.routing_key or "order.created",
                    mandatory=True,
                )
            self.republished.append(str(message.message_id))
        return taken
