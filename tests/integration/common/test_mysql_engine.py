"""Every connection of a common.mysql engine speaks UTC and carries its session settings."""

from __future__ import annotations

import pytest

from analytics_service.adapters.database import build_engine as analytics_engine
from analytics_service.settings import AnalyticsSettings
from order_service.container import build_engine as order_engine
from order_service.settings import OrderSettings

pytestmark = pytest.mark.integration


async def _session(engine) -> tuple[str, int, int, str]:
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            async with raw.driver_connection.cursor() as cursor:
                await cursor.execute(
                    "SELECT @@session.time_zone, @@session.innodb_lock_wait_timeout,"
                    " @@session.lock_wait_timeout"
                )
                (row,) = await cursor.fetchall()
                # tx_isolation on MariaDB before 11.1, transaction_isolation on MySQL 8.
                await cursor.execute(
                    "SHOW SESSION VARIABLES"
                    " WHERE Variable_name IN ('tx_isolation', 'transaction_isolation')"
                )
                ((_, isolation), *_) = await cursor.fetchall()
            await conn.rollback()
    finally:
        await engine.dispose()
    return row[0], int(row[1]), int(row[2]), isolation


async def test_the_order_engine_connects_in_utc_with_short_lock_waits_and_read_committed():
    settings = OrderSettings.from_env()
    zone, innodb_wait, metadata_wait, isolation = await _session(order_engine(settings))
    assert zone == "+00:00"
    assert innodb_wait == metadata_wait == settings.db_lock_wait_timeout
    assert isolation == "READ-COMMITTED"


async def test_the_analytics_engine_connects_in_utc_with_its_lock_wait():
    settings = AnalyticsSettings.from_env()
    engine = analytics_engine(
        settings.database_url, pool_size=1, connect_timeout=settings.db_connect_timeout
    )
    zone, innodb_wait, _, isolation = await _session(engine)
    assert (zone, innodb_wait, isolation) == ("+00:00", 10, "REPEATABLE-READ")
