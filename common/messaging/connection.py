"""Broker connections that come back on their own after a broker restart."""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import AbstractRobustConnection

from common.observability import get_logger

__all__ = ["connect_robust_forever"]

log = get_logger(__name__)


async def connect_robust_forever(
    url: str,
    *,
    client_name: str,
    initial_backoff: float = 0.2,
    max_backoff: float = 5.0,
) -> AbstractRobustConnection:
    """Connect, retrying with backoff until the broker answers.

    aio-pika's robust connection reconnects after it was up once, but its first connect fails
    fast; a service that starts before the broker must keep trying instead of dying.
    """
    backoff = initial_backoff
    while True:
        try:
            return await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": client_name},
                reconnect_interval=1.0,
                fail_fast="false",
            )
        except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
            log.warning("broker_connect_failed", error=str(exc), retry_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
