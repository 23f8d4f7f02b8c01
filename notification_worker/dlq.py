"""Parking-lot operations: list, show, replay and purge ``<queue>.dlq``.

Browsing takes messages without acking them and returns them by closing the channel, so a list
or show never loses one. Replay publishes a copy to the work queue with a confirm (attempts
reset, park headers dropped) and only then acks the parked original: a crash in between leaves
a duplicate, which the sent store absorbs, never a loss.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from common.messaging.consumer import (
    ATTEMPT_HEADER,
    LAST_ERROR_HEADER,
    PARK_REASON_HEADER,
    PARKED_AT_HEADER,
    SOURCE_QUEUE_HEADER,
)
from common.messaging.publisher import ConfirmingPublisher, OutgoingMessage
from common.messaging.topology import ConsumerQueue

__all__ = ["ParkedMessage", "list_parked", "purge", "replay"]

REPLAYED_AT_HEADER = "x-replayed-at"
_DROPPED_ON_REPLAY = (
    ATTEMPT_HEADER,
    PARK_REASON_HEADER,
    LAST_ERROR_HEADER,
    PARKED_AT_HEADER,
    SOURCE_QUEUE_HEADER,
    "x-delivery-count",
)


@dataclass(frozen=True)
class ParkedMessage:
    message_id: str
    event_type: str
    reason: str
    last_error: str
    attempts: int
    parked_at: str
    headers: dict[str, Any]
    body: bytes

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> ParkedMessage:
        headers = {k: _plain(v) for k, v in (message.headers or {}).items()}
        return cls(
            message_id=message.message_id or "",
            event_type=message.type or "",
            reason=str(headers.get(PARK_REASON_HEADER, "")),
            last_error=str(headers.get(LAST_ERROR_HEADER, "")),
            attempts=int(headers.get(ATTEMPT_HEADER, 0) or 0),
            parked_at=str(headers.get(PARKED_AT_HEADER, "")),
            headers=headers,
            body=message.body,
        )


async def _take_all(channel: AbstractChannel, spec: ConsumerQueue) -> list[AbstractIncomingMessage]:
    queue = await channel.get_queue(spec.dlq, ensure=False)
    taken: list[AbstractIncomingMessage] = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        taken.append(message)
    return taken


async def list_parked(
    connection: AbstractConnection, spec: ConsumerQueue, message_id: str | None = None
) -> list[ParkedMessage]:
    channel = await connection.channel()
    try:
        taken = await _take_all(channel, spec)
        return [
            ParkedMessage.of(m) for m in taken if message_id is None or m.message_id == message_id
        ]
    finally:
        # Closing the channel hands every unacked message back to the parking lot.
        with contextlib.suppress(Exception):
            await channel.close()


async def replay(
    connection: AbstractConnection, spec: ConsumerQueue, message_id: str | None = None
) -> list[ParkedMessage]:
    """Move parked messages (all, or those with ``message_id``) back to the work queue."""
    browse = await connection.channel()
    confirm = await connection.channel(publisher_confirms=True, on_return_raises=True)
    publisher = ConfirmingPublisher(confirm, "")
    moved: list[ParkedMessage] = []
    try:
        taken = await _take_all(browse, spec)
        chosen = [m for m in taken if message_id is None or m.message_id == message_id]
        outgoing = [_replayed(m, spec) for m in chosen]
        results = await publisher.publish_many(outgoing)
        for message, result in zip(chosen, results, strict=True):
            if result.ok:
                await message.ack()
                moved.append(ParkedMessage.of(message))
        return moved
    finally:
        for channel in (browse, confirm):
            with contextlib.suppress(Exception):
                await channel.close()


async def purge(connection: AbstractConnection, spec: ConsumerQueue) -> int:
    channel = await connection.channel()
    try:
        queue = await channel.get_queue(spec.dlq, ensure=False)
        result = await queue.purge()
        return int(result.message_count or 0)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


def _replayed(message: AbstractIncomingMessage, spec: ConsumerQueue) -> OutgoingMessage:
    headers = {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in _DROPPED_ON_REPLAY and not k.startswith("x-death")
    }
    headers[REPLAYED_AT_HEADER] = datetime.now(UTC).isoformat()
    return OutgoingMessage(
        body=message.body,
        routing_key=spec.name,
        message_id=message.message_id or "",
        event_type=message.type or "",
        timestamp=message.timestamp or datetime.now(UTC),
        headers=headers,
        exchange="",
    )


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value
