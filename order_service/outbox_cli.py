"""python -m order_service outbox list|replay|purge: the outbox's parking lot.

A parked row is one the broker refused on its own (unroutable or nacked) on every attempt. It
stays in the outbox, out of the relay's way. ``replay`` hands it back to the relay (attempts
reset; its next recovery pass publishes it), ``purge`` deletes it for good.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from common.utc import aware_utc
from order_service.adapters.tables import UNPUBLISHED, outbox

__all__ = ["list_parked", "main", "purge_parked", "replay_parked"]


def _parked(exchange: str, ids: Sequence[int] | None) -> list[Any]:
    where = [
        outbox.c.exchange == exchange,
        outbox.c.published_at == UNPUBLISHED,
        outbox.c.parked_at.is_not(None),
    ]
    if ids is not None:
        where.append(outbox.c.id.in_(list(ids)))
    return where


async def list_parked(engine: AsyncEngine, exchange: str, limit: int = 100) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(
                outbox.c.id,
                outbox.c.event_id,
                outbox.c.event_type,
                outbox.c.routing_key,
                outbox.c.attempts,
                outbox.c.last_error,
                outbox.c.occurred_at,
                outbox.c.parked_at,
            )
            .where(*_parked(exchange, None))
            .order_by(outbox.c.id)
            .limit(limit)
        )
        return [
            {
                "id": r.id,
                "event_id": r.event_id,
                "event_type": r.event_type,
                "routing_key": r.routing_key,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "occurred_at": aware_utc(r.occurred_at).isoformat(),
                "parked_at": aware_utc(r.parked_at).isoformat(),
            }
            for r in rows
        ]


async def count_parked(engine: AsyncEngine, exchange: str) -> int:
    async with engine.connect() as conn:
        result = await conn.execute(select(func.count()).where(*_parked(exchange, None)))
        return int(result.scalar_one())


async def replay_parked(engine: AsyncEngine, exchange: str, ids: Sequence[int] | None) -> int:
    """Give parked rows back to the relay (all of them when ``ids`` is None)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(outbox)
            .where(*_parked(exchange, ids))
            .values(parked_at=None, attempts=0, next_attempt_at=None)
        )
        return int(result.rowcount)


async def purge_parked(engine: AsyncEngine, exchange: str, ids: Sequence[int] | None) -> int:
    """Delete parked rows for good: their events are never published."""
    async with engine.begin() as conn:
        result = await conn.execute(delete(outbox).where(*_parked(exchange, ids)))
        return int(result.rowcount)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m order_service outbox",
        description="Inspect, replay or purge parked outbox rows.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="print parked rows, one JSON object a line")
    listing.add_argument("--limit", type=int, default=100)
    for action in ("replay", "purge"):
        cmd = sub.add_parser(action, help=f"{action} parked rows")
        which = cmd.add_mutually_exclusive_group(required=True)
        which.add_argument("--id", type=int, action="append", dest="ids", help="a row id")
        which.add_argument("--all", action="store_true", help="every parked row")
    return parser


async def _run(args: argparse.Namespace, database_url: str, exchange: str) -> int:
    engine = create_async_engine(database_url)
    try:
        if args.action == "list":
            for row in await list_parked(engine, exchange, args.limit):
                print(json.dumps(row))
            print(f"# {await count_parked(engine, exchange)} parked row(s) on {exchange!r}")
            return 0
        ids = None if args.all else args.ids
        if args.action == "replay":
            print(f"replayed {await replay_parked(engine, exchange, ids)} row(s)")
        else:
            print(f"purged {await purge_parked(engine, exchange, ids)} row(s)")
        return 0
    finally:
        await engine.dispose()


def main(argv: Sequence[str], database_url: str, exchange: str) -> int:
    args = _parser().parse_args(list(argv))
    return asyncio.run(_run(args, database_url, exchange))
