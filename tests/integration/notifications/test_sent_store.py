"""The Redis sent store's batch operations against a real Redis."""

from __future__ import annotations

from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from common.testing import unique_name
from notification_worker.sent_store import (
    _CLAIM,
    Claim,
    ClaimRequest,
    RecordRequest,
    RedisSentStore,
)
from tests.integration.notifications.conftest import REDIS_URL

pytestmark = pytest.mark.integration


class CountingRedis(Redis):
    """Counts the commands the store sends: each one is a request Redis parses and answers."""

    commands: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]))
        return await super().execute_command(*args, **options)


@pytest.fixture
async def redis():
    client = cast(CountingRedis, CountingRedis.from_url(REDIS_URL))
    client.commands = []
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis: CountingRedis, redis_prefix: str):
    return RedisSentStore(redis, prefix=redis_prefix, sent_ttl_seconds=60, audit_ttl_seconds=60)


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
    store._claim = store._redis.register_script(f"-- {unique_name('fresh')}\n" + _CLAIM)
    requests = [ClaimRequest(unique_name("event"), "log", "t1") for _ in range(2)]
    assert await store.claim_many(requests, lease=5) == [Claim.CLAIMED] * 2


async def test_a_batch_of_claims_and_a_batch_of_records_are_one_command_each(
    store: RedisSentStore, redis: CountingRedis
):
    await store.claim_many([ClaimRequest(unique_name("warm"), "log", "t")], lease=5)
    await store.record_many([RecordRequest(unique_name("warm"), "log", "t", "order-w", "log")])
    redis.commands.clear()
    keys = [unique_name("event") for _ in range(30)]
    await store.claim_many([ClaimRequest(k, "log", f"t-{k}") for k in keys], lease=5)
    await store.record_many([RecordRequest(k, "log", f"t-{k}", "order-c", "log") for k in keys])
    assert redis.commands == ["EVALSHA", "EVALSHA"]
    assert await store.audit(["order-c"]) == {"order-c": {"log": 30}}


async def test_a_key_of_another_type_fails_its_own_claim_and_the_others_are_claimed(
    store: RedisSentStore, redis: CountingRedis, redis_prefix: str
):
    keys = [unique_name("event") for _ in range(5)]
    # Something else wrote a hash where the third send's record belongs.
    await redis.hset(f"{redis_prefix}:sent:{keys[2]}:log", "field", "value")
    answers = await store.claim_many([ClaimRequest(k, "log", f"t-{k}") for k in keys], lease=5)
    assert isinstance(answers[2], ResponseError)
    assert answers[:2] + answers[3:] == [Claim.CLAIMED] * 4


async def test_a_record_batch_with_a_refused_key_raises_and_its_retry_counts_each_send_once(
    store: RedisSentStore, redis: CountingRedis, redis_prefix: str
):
    keys = [unique_name("event") for _ in range(4)]
    bad = f"{redis_prefix}:sent:{keys[1]}:log"
    await redis.hset(bad, "field", "value")
    records = [RecordRequest(k, "log", f"t-{k}", "order-r", "log") for k in keys]
    with pytest.raises(ResponseError):
        await store.record_many(records)
    assert await store.audit(["order-r"]) == {"order-r": {"log": 3}}  # the others landed
    await redis.delete(bad)
    await store.record_many(records)  # the sender retries the whole batch
    assert await store.audit(["order-r"]) == {"order-r": {"log": 4}}
    claims = await store.claim_many([ClaimRequest(k, "log", "other") for k in keys], lease=5)
    assert claims == [Claim.SENT] * 4


async def test_a_record_without_an_order_marks_the_send_and_counts_nothing(
    store: RedisSentStore,
):
    counted, uncounted = unique_name("event"), unique_name("event")
    await store.record_many(
        [
            RecordRequest(uncounted, "log", "t-u", None, "log"),
            RecordRequest(counted, "log", "t-c", "order-n", "log"),
        ]
    )
    assert await store.audit(["order-n"]) == {"order-n": {"log": 1}}
    claims = [ClaimRequest(k, "log", "other") for k in (uncounted, counted)]
    assert await store.claim_many(claims, lease=5) == [Claim.SENT, Claim.SENT]


async def test_an_empty_batch_sends_nothing(store: RedisSentStore, redis: CountingRedis):
    assert await store.claim_many([], lease=5) == []
    await store.record_many([])
    assert redis.commands == []
