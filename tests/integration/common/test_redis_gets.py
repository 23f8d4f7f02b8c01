"""PipelinedRedisGets against a real Redis: every caller gets its own key's value, concurrent
GETs share one connection, a connection the server closed is replaced without failing a GET,
and a silent server fails its GETs, never hangs them or shifts a reply onto another caller.
(That a batch goes out in one write, and what is retried: tests/unit/common/test_redis_gets.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from common.redis_client import redis_client
from common.redis_gets import PipelinedRedisGets

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
NAME = "pipelined-gets-test"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = redis_client(REDIS_URL, timeout=2.0)
    yield client
    await client.aclose()


@pytest.fixture
async def keys(redis: Redis) -> AsyncIterator[dict[str, bytes]]:
    prefix = f"test:gets:{uuid.uuid4().hex}:"
    values = {f"{prefix}{i}": f"value-{i}-{uuid.uuid4().hex}".encode() for i in range(300)}
    await redis.mset(values)
    yield values
    await redis.delete(*values)


def named_gets(redis: Redis) -> PipelinedRedisGets:
    """Its connection names itself, so a test can find it in CLIENT LIST."""
    pool = redis.connection_pool
    pool.connection_kwargs["client_name"] = f"{NAME}-{uuid.uuid4().hex}"
    return PipelinedRedisGets(pool)


async def own_connections(redis: Redis, name: str) -> list[dict[str, str]]:
    return [c for c in await redis.client_list() if c.get("name") == name]


async def test_concurrent_gets_each_receive_their_own_value(redis, keys):
    gets = PipelinedRedisGets(redis.connection_pool)
    try:
        names = list(keys) * 3
        values = await asyncio.gather(*(gets.get(k) for k in names))
        assert values == [keys[k] for k in names]
        assert await gets.get(f"test:gets:absent:{uuid.uuid4().hex}") is None
    finally:
        await gets.aclose()


async def test_concurrent_gets_share_one_connection(redis, keys):
    gets = named_gets(redis)
    name = redis.connection_pool.connection_kwargs["client_name"]
    try:
        for _ in range(3):
            await asyncio.gather(*(gets.get(k) for k in keys))
        connections = await own_connections(redis, name)
        assert len(connections) == 1 and connections[0]["cmd"] == "get"
    finally:
        await gets.aclose()
    assert await own_connections(redis, name) == []


async def test_a_caller_that_stops_waiting_does_not_shift_the_replies(redis, keys):
    gets = PipelinedRedisGets(redis.connection_pool)
    names = list(keys)
    try:
        abandoned = [asyncio.ensure_future(gets.get(k)) for k in names[:100]]
        await asyncio.sleep(0)  # each has asked; half of them stop waiting before the reply
        for task in abandoned[::2]:
            task.cancel()
        kept = [gets.get(k) for k in names[100:200]]
        values = await asyncio.gather(*kept)
        assert values == [keys[k] for k in names[100:200]]
        settled = await asyncio.gather(*abandoned, return_exceptions=True)
        for k, value in zip(names[:100], settled, strict=True):
            assert isinstance(value, asyncio.CancelledError) or value == keys[k]
        assert await asyncio.gather(*(gets.get(k) for k in names[200:])) == [
            keys[k] for k in names[200:]
        ]
    finally:
        await gets.aclose()


async def test_a_connection_killed_while_idle_is_replaced_without_failing_a_get(redis, keys):
    gets = named_gets(redis)
    name = redis.connection_pool.connection_kwargs["client_name"]
    key, value = next(iter(keys.items()))
    try:
        assert await gets.get(key) == value
        (victim,) = await own_connections(redis, name)
        killed = await redis.execute_command("CLIENT", "KILL", "ID", victim["id"])
        assert killed == 1  # the fault happened
        assert await asyncio.gather(*(gets.get(k) for k in keys)) == list(keys.values())
        (replacement,) = await own_connections(redis, name)
        assert replacement["id"] != victim["id"]
    finally:
        await gets.aclose()


async def test_a_silent_server_fails_the_get_within_the_socket_timeout():
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = redis_client(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    gets = PipelinedRedisGets(client.connection_pool)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(gets.get("k"), 5.0)
        assert accepted  # it did reach the server, which said nothing
        assert loop.time() - started < 2.0
    finally:
        await gets.aclose()
        await client.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


async def test_closing_closes_the_connection_and_refuses_new_gets(redis, keys):
    gets = named_gets(redis)
    name = redis.connection_pool.connection_kwargs["client_name"]
    key = next(iter(keys))
    assert await gets.get(key) == keys[key]
    await gets.aclose()
    assert await own_connections(redis, name) == []
    with pytest.raises(RedisConnectionError):
        await gets.get(key)


async def test_a_key_of_another_type_fails_its_own_get_only(redis, keys):
    gets = named_gets(redis)
    name = redis.connection_pool.connection_kwargs["client_name"]
    hash_key = f"test:gets:hash:{uuid.uuid4().hex}"
    await redis.hset(hash_key, "field", "value")
    names = list(keys)[:50]
    try:
        results = await asyncio.gather(
            *(gets.get(k) for k in names[:25]),
            gets.get(hash_key),
            *(gets.get(k) for k in names[25:]),
            return_exceptions=True,
        )
        assert isinstance(results[25], ResponseError)
        assert [r for i, r in enumerate(results) if i != 25] == [keys[k] for k in names]
        assert len(await own_connections(redis, name)) == 1
    finally:
        await gets.aclose()
        await redis.delete(hash_key)
