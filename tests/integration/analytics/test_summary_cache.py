"""The summary cache in Redis: one per database, however many share the Redis."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from analytics_service.adapters.cache import RedisSummaryCache, summary_namespace
from common.testing import unique_name

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


def _cache(redis: Redis, database_url: str) -> RedisSummaryCache:
    return RedisSummaryCache(
        redis, namespace=summary_namespace(database_url), ttl_seconds=30, fallback_ttl_seconds=60
    )


async def test_a_summary_of_one_database_is_never_answered_for_another_on_the_same_redis(
    redis: Redis,
) -> None:
    name = unique_name("analytics").replace("-", "_")
    ours = _cache(redis, f"mysql+aiomysql://a:p@127.0.0.1:3306/{name}")
    theirs = _cache(redis, f"mysql+aiomysql://a:p@127.0.0.1:3306/{name}_bench")
    try:
        body, generation = await ours.get()
        assert body is None
        await ours.put(generation, b'{"db": "ours"}')
        assert await ours.get() == (b'{"db": "ours"}', generation)

        assert (await theirs.get())[0] is None
        assert await theirs.fallback() is None
        # The other database's commits do not invalidate ours.
        await theirs.invalidate()
        assert (await ours.get())[0] == b'{"db": "ours"}'

        await ours.invalidate()
        assert (await ours.get())[0] is None
        assert await ours.fallback() == b'{"db": "ours"}'
    finally:
        keys = [k async for k in redis.scan_iter(match=f"analytics:v1:summary:*{name}*")]
        if keys:
            await redis.delete(*keys)


def test_the_namespace_names_the_server_and_the_database() -> None:
    assert summary_namespace("mysql+aiomysql://u:secret@db.internal:3307/analytics") == (
        "db.internal:3307/analytics"
    )
    assert "secret" not in summary_namespace("mysql+aiomysql://u:secret@h/analytics")
