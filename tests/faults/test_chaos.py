"""The randomized fault run (tests/faults/chaos.py): two minutes inside ``make test``, fifteen in
``make test-chaos`` (marker ``chaos``). ``CHAOS_SEED`` replays a schedule; ``CHAOS_SECONDS``
changes the long run's length."""

from __future__ import annotations

import os

import pytest

from tests.faults import infra
from tests.faults.chaos import chaos_seed, run_chaos

pytestmark = [pytest.mark.e2e]


@pytest.mark.timeout(600)
async def test_two_minutes_of_random_faults_lose_and_double_nothing() -> None:
    # Only the run's own faults (proxies, its processes, its queues): the shared servers are
    # stopped or locked by the long run alone.
    await run_chaos(120, rate=30, seed=chaos_seed(), real=False)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
async def test_fifteen_minutes_of_random_faults_lose_and_double_nothing() -> None:
    # The shared servers are stopped or locked only when no other test run uses them.
    real = not infra.other_pytest_processes()
    seconds = float(os.environ.get("CHAOS_SECONDS", "900"))
    await run_chaos(seconds, rate=50, seed=chaos_seed(), real=real)
