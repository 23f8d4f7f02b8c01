"""``python -m notification_worker`` runs the worker;
``python -m notification_worker dlq list|show ID|replay [ID|--all]|purge`` works the parking lot."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from common.messaging.connection import connect_any
from common.settings import SettingsError
from notification_worker import dlq
from notification_worker.bootstrap import run_worker
from notification_worker.settings import NotificationSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m notification_worker")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the worker (the default)")
    parking = commands.add_parser("dlq", help="work the parking lot").add_subparsers(
        dest="action", required=True
    )
    parking.add_parser("list", help="list parked messages")
    show = parking.add_parser("show", help="print one parked message in full")
    show.add_argument("message_id")
    replay = parking.add_parser("replay", help="move parked messages back to the work queue")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("message_id", nargs="?")
    which.add_argument("--all", action="store_true")
    parking.add_parser("purge", help="delete every parked message")
    return parser


async def _dlq(settings: NotificationSettings, args: argparse.Namespace) -> int:
    spec = settings.queue
    connection = await connect_any(settings.rabbitmq_url, timeout=10)
    try:
        if args.action == "list":
            parked = await dlq.list_parked(connection, spec)
            for p in parked:
                print(
                    f"{p.message_id}  {p.event_type}  reason={p.reason}  "
                    f"attempts={p.attempts}  parked_at={p.parked_at}  error={p.last_error}"
                )
            print(f"{len(parked)} parked message(s) in {spec.dlq}")
        elif args.action == "show":
            parked = await dlq.list_parked(connection, spec, args.message_id)
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
                            "body": json.loads(p.body),
                        },
                        indent=2,
                        default=str,
                    )
                )
        elif args.action == "replay":
            moved = await dlq.replay(connection, spec, None if args.all else args.message_id)
            for p in moved:
                print(f"replayed {p.message_id} ({p.event_type}, was {p.reason}) -> {spec.name}")
            print(f"{len(moved)} message(s) moved from {spec.dlq} to {spec.name}")
            if not moved and not args.all:
                return 1
        elif args.action == "purge":
            print(f"purged {await dlq.purge(connection, spec)} message(s) from {spec.dlq}")
    finally:
        await connection.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = NotificationSettings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "dlq":
        return asyncio.run(_dlq(settings, args))
    import uvloop

    # uvloop: the worker is I/O-bound on Redis and the broker; the C loop halves its overhead.
    return uvloop.run(run_worker(settings))


if __name__ == "__main__":
    sys.exit(main())
