"""Parking-lot operations for every consumer queue: list, show, replay and purge ``<queue>.dlq``.

``python -m common.messaging.dlq list|show|replay|purge <queue>`` works any parking lot
(analytics, fulfilment, scheduler, notifications; DESIGN.md §4 rule 8), with the broker URL from
``--url`` or ``RABBITMQ_URL``. Browsing takes messages without acking them and returns them by
closing the channel, so a list or show never loses one. Replay publishes a copy to the work
queue with a confirm (attempts reset, park headers dropped) and only then acks the parked
original: a crash in between leaves a duplicate, which idempotent effects absorb, never a loss.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from common.messaging.connection import connect_any
from common.messaging.consumer import (
    ATTEMPT_HEADER,
    LAST_ERROR_HEADER,
    PARK_REASON_HEADER,
    PARKED_AT_HEADER,
    SOURCE_QUEUE_HEADER,
)
from common.messaging.publisher import ConfirmingPublisher, OutgoingMessage
from common.messaging.topology import ConsumerQueue
from common.settings import Env, SettingsError

__all__ = [
    "REPLAYED_AT_HEADER",
    "ParkedMessage",
    "add_commands",
    "list_parked",
    "main",
    "purge",
    "replay",
    "run_command",
]

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"

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


# -- the command line ------------------------------------------------------------------------
def add_commands(parser: argparse.ArgumentParser, *, queue: bool = False) -> None:
    """The list / show / replay / purge sub-commands, each naming its ``queue`` when asked
    (``python -m notification_worker dlq`` knows its own)."""
    actions = parser.add_subparsers(dest="action", required=True)

    def action(name: str, help: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help)
        if queue:
            sub.add_argument(
                "queue",
                help="the work queue (analytics.orders, notifications.orders, "
                "orders.fulfilment, orders.scheduler) or its parking lot (<queue>.dlq)",
            )
        return sub

    action("list", "list parked messages")
    action("show", "print one parked message in full").add_argument("message_id")
    which = action(
        "replay", "move parked messages back to the work queue"
    ).add_mutually_exclusive_group(required=True)
    which.add_argument("message_id", nargs="?")
    which.add_argument("--all", action="store_true")
    action("purge", "delete every parked message")


async def run_command(connection: AbstractConnection, spec: ConsumerQueue, args: Any) -> int:
    """Carries out one parsed sub-command against ``spec``'s parking lot; the exit code."""
    if args.action == "list":
        parked = await list_parked(connection, spec)
        for p in parked:
            print(
                f"{p.message_id}  {p.event_type}  reason={p.reason}  "
                f"attempts={p.attempts}  parked_at={p.parked_at}  error={p.last_error}"
            )
        print(f"{len(parked)} parked message(s) in {spec.dlq}")
    elif args.action == "show":
        parked = await list_parked(connection, spec, args.message_id)
        if not parked:
            print(f"no parked message {args.message_id} in {spec.dlq}", file=sys.stderr)
            return 1
        for p in parked:
            print(
                json.dumps(
                    {
                        "message_id": p.message_id,
                        "event_type": p.event_type,
                        "headers": p.headers,
                        "body": _json_or_text(p.body),
                    },
                    indent=2,
                    default=str,
                )
            )
    elif args.action == "replay":
        moved = await replay(connection, spec, None if args.all else args.message_id)
        for p in moved:
            print(f"replayed {p.message_id} ({p.event_type}, was {p.reason}) -> {spec.name}")
        print(f"{len(moved)} message(s) moved from {spec.dlq} to {spec.name}")
        if not moved and not args.all:
            return 1
    elif args.action == "purge":
        print(f"purged {await purge(connection, spec)} message(s) from {spec.dlq}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m common.messaging.dlq",
        description="List, show, replay or purge the parking lot <queue>.dlq of a work queue.",
    )
    parser.add_argument(
        "--url",
        default=None,
        help=f"broker URL (default: $RABBITMQ_URL; {DEFAULT_URL} with ORDERFLOW_ENV=local)",
    )
    add_commands(parser, queue=True)
    return parser


async def _main(args: argparse.Namespace, url: str) -> int:
    spec = ConsumerQueue(args.queue.removesuffix(".dlq"))
    connection = await connect_any(url, timeout=10)
    try:
        return await run_command(connection, spec, args)
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        # A credential: the local guest default applies only with ORDERFLOW_ENV=local.
        url = args.url or Env().credential("RABBITMQ_URL", DEFAULT_URL)
    except SettingsError as exc:
        print(f"configuration error: {exc} (or pass --url)", file=sys.stderr)
        return 2
    return asyncio.run(_main(args, url))


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace")


if __name__ == "__main__":
    sys.exit(main())
