"""Short versions of every fault scenario (small load, one cycle, faults through proxies), run by
``make test``; the full versions are in test_faults_full.py (``make test-faults``)."""

from __future__ import annotations

import pytest

from tests.faults import dependencies, duplicates, long_outage, scenarios
from tests.faults.scenarios import Sizes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

SHORT = Sizes(rate=60, duration=6, outage=2, cycles=1, warmup_orders=40)


async def test_a_broker_outage_mid_load_loses_and_doubles_nothing() -> None:
    await scenarios.broker_outage(SHORT)


async def test_consumers_killed_mid_batch_apply_and_notify_every_order_once() -> None:
    await scenarios.consumers_killed(SHORT)


async def test_the_order_service_killed_with_an_outbox_backlog_publishes_it_after_restart() -> None:
    await scenarios.order_service_killed_with_backlog(SHORT)


async def test_the_database_unreachable_gives_503_problems_then_recovers_on_its_own() -> None:
    await dependencies.database_unavailable(SHORT)


async def test_redis_unreachable_every_api_answers_from_the_database() -> None:
    await dependencies.redis_unavailable(SHORT)


async def test_duplicated_events_change_nothing_and_poison_is_parked() -> None:
    await duplicates.duplicates_and_poison(Sizes(rate=60, duration=6, outage=0, warmup_orders=20))


async def test_a_database_outage_longer_than_the_whole_retry_budget_parks_nothing() -> None:
    # The budget made small here only (tiers 0.2, 0.5 s, shipped attempts: 1.7 s); the outage
    # lasts six times that. tests/faults/long_outage.py explains the equivalence.
    await long_outage.outage_longer_than_the_retry_budget(
        Sizes(rate=60, duration=20, outage=10, warmup_orders=60), retry_delays="0.2,0.5"
    )
