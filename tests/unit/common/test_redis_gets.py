"""PipelinedRedisGets batches what is asked while a batch is on the wire (a fake connection
counts the writes); the integration tests run it against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from common.redis_gets import PipelinedRedisGets


class FakeConnection:
    def __init__(self, store: dict[str, bytes], log: list[list[str]]) -> None:
        self.store = store
        self.log = log
        self.replies: list[bytes | None] = []
        self.reply_gate: asyncio.Event | None = None
        self.connected = False

    async def connect(self) -> None:
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
        if not self.connected:
            raise ConnectionError("closed")
        return self.replies.pop(0)


class FakePool:
    def __init__(self, store: dict[str, bytes]) -> None:
        self.store = store
        self.writes: list[list[str]] = []
        self.made: list[FakeConnection] = []

    def make_connection(self) -> FakeConnection:
        connection = FakeConnection(self.store, self.writes)
        self.made.append(connection)
        return connection


def gets_on(pool: FakePool) -> PipelinedRedisGets:
    return PipelinedRedisGets(pool)


async def test_gets_asked_together_go_out_in_one_write():
    pool = FakePool({f"k{i}": f"v{i}".encode() for i in range(50)})
    gets = gets_on(pool)
    values = await asyncio.gather(*(gets.get(f"k{i}") for i in range(50)))
    assert values == [f"v{i}".encode() for i in range(50)]
    assert pool.writes == [[f"k{i}" for i in range(50)]]
    await gets.aclose()


async def test_gets_asked_while_a_batch_is_on_the_wire_go_out_in_the_next_write():
    pool = FakePool({"a": b"1", "b": b"2", "c": b"3"})
    gets = gets_on(pool)
    assert await gets.get("a") == b"1"
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


async def test_a_failed_batch_fails_each_of_its_gets_and_the_next_uses_a_new_connection():
    pool = FakePool({"a": b"1"})
    gets = gets_on(pool)
    assert await gets.get("a") == b"1"
    pool.made[0].connected = False  # the server went away
    results = await asyncio.gather(gets.get("a"), gets.get("a"), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert results[0] is not results[1]
    assert await gets.get("a") == b"1"
    assert len(pool.made) == 2
    await gets.aclose()


async def test_closing_fails_a_waiting_get():
    pool = FakePool({"a": b"1"})
    gets = gets_on(pool)
    assert await gets.get("a") == b"1"
    pool.made[0].reply_gate = asyncio.Event()  # never set: the reply does not come
    waiting = asyncio.ensure_future(gets.get("a"))
    await asyncio.sleep(0)
    await gets.aclose()
    with pytest.raises(RedisConnectionError):
        await waiting
    assert not pool.made[0].connected
