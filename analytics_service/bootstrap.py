"""The one place that builds the concrete adapters both processes share."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import Counter
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from analytics_service.adapters.cache import RedisSummaryCache, summary_namespace
from analytics_service.adapters.database import build_engine
from analytics_service.adapters.fact_store import MySqlAnalyticsStore
from analytics_service.adapters.reader import MySqlAnalyticsReader
from analytics_service.settings import AnalyticsSettings
from common import tracing
from common.redis_client import redis_client

__all__ = ["Adapters"]


@dataclass
class Adapters:
    engine: AsyncEngine
    redis: Redis
    store: MySqlAnalyticsStore
    reader: MySqlAnalyticsReader
    cache: RedisSummaryCache

    @classmethod
    def build(
        cls,
        settings: AnalyticsSettings,
        *,
        cache_requests: Counter | None = None,
        cache_invalidations: Counter | None = None,
        consumer: bool = False,
    ) -> Adapters:
        """Nothing connects here: pools open on first use. The consumer's pool skips the
        per-checkout ping and reset (build_engine)."""
        engine = build_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            connect_timeout=settings.db_connect_timeout,
            check_on_checkout=not consumer,
        )
        tracing.instrument_engine(engine)
        redis = redis_client(settings.redis_url, timeout=settings.redis_timeout)
        cache = RedisSummaryCache(
            redis,
            namespace=summary_namespace(settings.database_url),
            ttl_seconds=settings.summary_ttl_seconds,
            fallback_ttl_seconds=settings.summary_fallback_ttl_seconds,
            requests=cache_requests,
            invalidations=cache_invalidations,
        )
        return cls(engine, redis, MySqlAnalyticsStore(engine), MySqlAnalyticsReader(engine), cache)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        await self.engine.dispose()

    async def mysql_up(self) -> bool:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await conn.rollback()
        return True

    async def redis_up(self) -> bool:
        return await self.cache.ping()
