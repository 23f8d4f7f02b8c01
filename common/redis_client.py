"""The Redis client every process builds the same way: one short timeout for connecting and
for every command, and a timeout is not retried.

A slow Redis must cost a bounded wait and then an error the caller handles (a cache bypass, a
deferral); retrying a timeout inside the client would multiply that wait.
"""

from __future__ import annotations

from redis.asyncio import Redis

__all__ = ["redis_client"]


def redis_client(url: str, *, timeout: float) -> Redis:
    """Nothing connects here: the pool opens on first use."""
    return Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
    )
