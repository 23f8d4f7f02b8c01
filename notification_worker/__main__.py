"""``python -m notification_worker`` runs the worker;
``python -m notification_worker dlq list|show ID|replay [ID|--all]|purge`` works the parking lot."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from common.messaging.connection import connect_any
from common.messaging.dlq import add_commands, run_command
from common.settings import SettingsError
from notification_worker.settings import NotificationSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m notification_worker")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the worker (the default)")
    # The generic parking-lot tool (python -m common.messaging.dlq), on this worker's queue.
    add_commands(commands.add_parser("dlq", help="work the parking lot"))
    return parser


async def _dlq(settings: NotificationSettings, args: argparse.Namespace) -> int:
    connection = await connect_any(settings.rabbitmq_url, timeout=10)
    try:
        return await run_command(connection, settings.queue, args)
    finally:
        await connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = NotificationSettings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "dlq":
        return asyncio.run(_dlq(settings, args))
    from common.serve import serve_http

    # The common host, as every process: SIGTERM drains the consumer and acks, then exit 0.
    serve_http(
        "notification_worker.bootstrap:app_from_env",
        factory=True,
        host=settings.http_host,
        port=settings.http_port,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
