"""The Redis sent store's batch operations against a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from common.testing import unique_name
from notification_worker.sent_store import (
    Claim,
    ClaimRequest,
    RecordRequest,
    RedisSentStore,
    _Script,
)
from tests.integration.notifications.conftest import REDIS_URL

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(redis_prefix: str):
    redis = Redis.from_url(REDIS_URL)
    yield RedisSentStore(redis, prefix=redis_prefix, sent_ttl_seconds=60, audit_ttl_seconds=60)
    await redis.aclose()


async def test_a_batch_claims_records_and_then_skips_every_send(store: RedisSentStore):
    keys = [unique_name("event") for _ in range(3)]
    requests = [ClaimRequest(k, "log", f"token-{k}") for k in keys]
    assert await store.claim_many(requests, lease=5) == [Claim.CLAIMED] * 3
    assert await store.claim_many(requests, lease=5) == [Claim.BUSY] * 3
    await store.record_many([RecordRequest(k, "log", f"token-{k}", "order-1", "log") for k in keys])
    assert await store.claim_many(requests, lease=5) == [Claim.SENT] * 3
    assert await store.audit(["order-1"]) == {"order-1": {"log": 3}}


async def test_a_record_repeated_with_its_token_counts_once_and_another_send_counts_again(
    store: RedisSentStore,
):
    key = unique_name("event")
    first = RecordRequest(key, "webhook", "token-a", "order-2", "webhook")
    await store.record_many([first])
    await store.record_many([first])  # the reply of the first was lost: recorded again
    assert await store.audit(["order-2"]) == {"order-2": {"webhook": 1}}
    await store.record_many([RecordRequest(key, "webhook", "token-b", "order-2", "webhook")])
    assert await store.audit(["order-2"]) == {"order-2": {"webhook": 2}}  # a real second send


async def test_a_script_redis_does_not_know_yet_is_loaded_and_the_batch_runs_once(
    store: RedisSentStore,
):
    # A script body Redis has never seen stands for a Redis that restarted or flushed scripts.
    store._claim_sha = _Script(f"-- {unique_name('fresh')}\n" + store._claim_sha.source)
    requests = [ClaimRequest(unique_name("event"), "log", "t1") for _ in range(2)]
    assert await store.claim_many(requests, lease=5) == [Claim.CLAIMED] * 2
