"""PipelinedRedisGets batches what is asked while a batch is on the wire (a fake connection
counts the writes); the integration tests run it against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from common.redis_gets import PipelinedRedisGets

WRONG_TYPE = b"<a hash>"


class FakeConnection:
    """Fails as redis-py's does: ConnectionError once the server closed it, TimeoutError when
    told to."""

    def __init__(self, pool: FakePool) -> None:
        self.pool = pool
        self.store = pool.store
        self.log = pool.writes
        self.replies: list[bytes | None] = []
        self.reply_gate: asyncio.Event | None = None
        self.connected = False
        self.times_out = False

    async def connect(self) -> None:
        if self.pool.refuse:
            raise RedisConnectionError("connection refused")
        self.connected = True

    async def disconnect(self) -> None:
        self.connected = False

    def pack_commands(self, commands: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        return list(commands)

    async def send_packed_command(self, packed: Any, check_health: bool = True) -> None:
        self.log.append([key for _, key in packed])
        self.replies.extend(self.store.get(key) for _, key in packed)

    async def read_response(self) -> bytes | None:
        if self.reply_gate is not None:
            await self.reply_gate.wait()
        if self.times_out:
            raise RedisTimeoutError("Timeout reading from socket")
        if not self.connected:
            raise RedisConnectionError("Connection closed by server.")
        reply = self.replies.pop(0)
        if reply == WRONG_TYPE:
            raise ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")
        return reply


class FakePool:
    def __init__(self, store: dict[str, bytes]) -> None:
        self.store = store
        self.writes: list[list[str]] = []
        self.made: list[FakeConnection] = []
        self.refuse = False

    def make_connection(self) -> FakeConnection:
        connection = FakeConnection(self)
        self.made.append(connection)
        return connection


def gets_on(pool: FakePool) -> PipelinedRedisGets:
    return PipelinedRedisGets(pool)


async def connected(store: dict[str, bytes]) -> tuple[FakePool, PipelinedRedisGets]:
    """Pipelined GETs whose connection has served one GET already (so it is reused next)."""
    pool = FakePool(store)
    gets = gets_on(pool)
    assert await gets.get("a") == store["a"]
    return pool, gets


async def test_gets_asked_together_go_out_in_one_write():
    pool = FakePool({f"k{i}": f"v{i}".encode() for i in range(50)})
    gets = gets_on(pool)
    values = await asyncio.gather(*(gets.get(f"k{i}") for i in range(50)))
    assert values == [f"v{i}".encode() for i in range(50)]
    assert pool.writes == [[f"k{i}" for i in range(50)]]
    await gets.aclose()


async def test_gets_asked_while_a_batch_is_on_the_wire_go_out_in_the_next_write():
    pool, gets = await connected({"a": b"1", "b": b"2", "c": b"3"})
    gate = asyncio.Event()
    pool.made[0].reply_gate = gate
    first = asyncio.ensure_future(gets.get("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(gets.get(k)) for k in ("b", "c")]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(first, *later) == [b"1", b"2", b"3"]
    assert pool.writes == [["a"], ["a"], ["b", "c"]]
    await gets.aclose()


async def test_an_error_reply_fails_its_own_get_only():
    pool = FakePool({"a": b"1", "h": WRONG_TYPE, "b": b"2"})
    gets = gets_on(pool)
    results = await asyncio.gather(
        gets.get("a"), gets.get("h"), gets.get("b"), return_exceptions=True
    )
    assert results[0] == b"1" and results[2] == b"2"
    assert isinstance(results[1], ResponseError)
    assert await gets.get("b") == b"2"
    assert len(pool.made) == 1  # the connection stayed in step
    await gets.aclose()


async def test_a_connection_found_closed_is_replaced_and_the_batch_sent_again():
    pool, gets = await connected({"a": b"1", "b": b"2"})
    pool.made[0].connected = False  # closed by the server while idle
    assert list(await asyncio.gather(gets.get("a"), gets.get("b"))) == [b"1", b"2"]
    assert len(pool.made) == 2
    assert pool.writes == [["a"], ["a", "b"], ["a", "b"]]
    await gets.aclose()


async def test_a_batch_fails_each_of_its_gets_when_no_new_connection_can_be_made():
    pool, gets = await connected({"a": b"1"})
    pool.made[0].connected = False
    pool.refuse = True  # the server is gone, not just the connection
    results = await asyncio.gather(gets.get("a"), gets.get("a"), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert results[0] is not results[1]
    pool.refuse = False
    assert await gets.get("a") == b"1"
    await gets.aclose()


async def test_a_timeout_fails_the_batch_without_a_second_try():
    pool, gets = await connected({"a": b"1"})
    pool.made[0].times_out = True
    with pytest.raises(RedisConnectionError):
        await gets.get("a")
    assert pool.writes == [["a"], ["a"]]
    assert await gets.get("a") == b"1"  # on a new connection
    assert len(pool.made) == 2
    await gets.aclose()


async def test_a_new_connection_that_fails_is_not_tried_again_for_the_same_batch():
    pool = FakePool({"a": b"1"})
    pool.refuse = True
    gets = gets_on(pool)
    with pytest.raises(RedisConnectionError):
        await gets.get("a")
    assert len(pool.made) == 1
    await gets.aclose()


async def test_closing_fails_a_waiting_get():
    pool, gets = await connected({"a": b"1"})
    pool.made[0].reply_gate = asyncio.Event()  # never set: the reply does not come
    waiting = asyncio.ensure_future(gets.get("a"))
    await asyncio.sleep(0)
    await gets.aclose()
    with pytest.raises(RedisConnectionError):
        await waiting
    assert not pool.made[0].connected
