"""The full fault suite (``make test-faults``): longer load, several cycles, and the real
RabbitMQ, MariaDB and Redis stopped and started (only when no other test run shares them)."""

from __future__ import annotations

import os

import pytest

from tests.faults import dependencies, duplicates, infra, long_outage, scenarios
from tests.faults.scenarios import Sizes

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

FULL = Sizes(rate=200, duration=60, outage=6, cycles=3, warmup_orders=300)


async def test_rabbitmq_stop_app_and_full_restart_mid_load_lose_and_double_nothing() -> None:
    infra.require_exclusive_infra()
    await scenarios.broker_outage(
        Sizes(rate=150, duration=90, outage=6, warmup_orders=300),
        faults=[
            ("stop_app", infra.rabbitmq_app_stopped),
            ("stop_app", infra.rabbitmq_app_stopped),
            ("server_restart", infra.rabbitmq_server_stopped),
        ],
    )


async def test_a_broker_outage_through_a_proxy_repeated_loses_nothing() -> None:
    await scenarios.broker_outage(
        Sizes(rate=200, duration=60, outage=5, cycles=3, warmup_orders=300)
    )


async def test_consumers_killed_repeatedly_mid_batch_apply_and_notify_every_order_once() -> None:
    await scenarios.consumers_killed(FULL)


async def test_the_order_service_killed_repeatedly_with_a_backlog_loses_nothing() -> None:
    await scenarios.order_service_killed_with_backlog(FULL)


async def test_mariadb_stopped_mid_load_gives_503_problems_then_recovers_on_its_own() -> None:
    infra.require_exclusive_infra()
    await dependencies.database_unavailable(
        Sizes(rate=100, duration=60, outage=10, warmup_orders=300), real_fault=infra.mariadb_stopped
    )


async def test_the_database_cut_repeatedly_through_a_proxy_recovers_every_time() -> None:
    await dependencies.database_unavailable(FULL)


async def test_redis_stopped_mid_load_every_api_answers_from_the_database() -> None:
    infra.require_exclusive_infra()
    await dependencies.redis_unavailable(
        Sizes(rate=150, duration=45, outage=10, warmup_orders=300), real_fault=infra.redis_stopped
    )


async def test_duplicates_and_poison_under_heavier_load_change_nothing() -> None:
    await duplicates.duplicates_and_poison(
        Sizes(rate=200, duration=30, outage=0, warmup_orders=500)
    )


@pytest.mark.timeout(1500)
async def test_mariadb_down_15_minutes_longer_than_the_shipped_retry_budget_parks_nothing() -> None:
    # Shipped tiers and attempts (budget 11 min 11 s). MariaDB refuses the system's connections
    # through its proxy, so other runs sharing the server keep it; FAULTS_REAL_OUTAGE=1 stops
    # the real server instead (only when no other test run shares it).
    real = None
    if os.environ.get("FAULTS_REAL_OUTAGE") == "1":
        infra.require_exclusive_infra()
        real = infra.mariadb_stopped
    await long_outage.outage_longer_than_the_retry_budget(
        Sizes(rate=50, duration=60, outage=15 * 60, warmup_orders=300), real_fault=real
    )
