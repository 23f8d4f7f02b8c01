"""GETs on one Redis connection of their own, pipelined: the GETs asked for while a batch is on
the wire go out together in the next one, one write for the batch and one parse per reply.

Why: redis-py spends ~50 µs of CPU on each command (a pool checkout and return, a retry wrapper,
timers and telemetry hooks) and ~9 µs per GET sent this way (a micro-benchmark of 16 concurrent
readers). A cached order read cost ~150 µs of the order service's CPU in all, so the client was a
third of it (docs/benchmark.md, "Cached reads on a pipelined Redis connection").

A failure is the caller's, as with the client: a batch that cannot be sent or read fails every
GET of it (the connection is dropped; the next batch opens a new one), and the client's socket
timeout bounds each connect, write and read. Only a connection found closed when reused is
replaced at once and the batch sent again, as redis-py's pool does. A caller that stops waiting
leaves its reply to be read and dropped, so the replies stay in step with the requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from common import tracing

__all__ = ["ConnectionMaker", "PipelinedRedisGets"]

_Waiter = tuple[str, "asyncio.Future[bytes | None]"]
# These reads bypass redis-py's command path, which the Redis instrumentation traces: each GET
# gets its span here instead, from asking to its reply.
_SPAN: dict[str, Any] = {
    "kind": tracing.SpanKind.CLIENT,
    "attributes": {"db.system.name": "redis", "db.operation.name": "GET"},
}


class _Connection(Protocol):
    """What is used of redis-py's asyncio Connection."""

    async def connect(self) -> None: ...

    async def disconnect(self) -> None: ...

    def pack_commands(self, commands: Sequence[tuple[str, str]]) -> Any: ...

    async def send_packed_command(self, command: Any, check_health: bool = ...) -> None: ...

    async def read_response(self) -> Any: ...


class ConnectionMaker(Protocol):
    """redis.asyncio.ConnectionPool: a connection with the pool's settings, outside the pool."""

    def make_connection(self) -> _Connection: ...


class PipelinedRedisGets:
    """Reads keys through a connection made with ``pool``'s settings (address, credentials,
    database, timeouts), outside the pool so no other command shares it."""

    def __init__(self, pool: ConnectionMaker) -> None:
        self._pool = pool
        self._connection: _Connection | None = None
        self._pending: list[_Waiter] = []
        self._wake = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closed = False

    async def get(self, key: str) -> bytes | None:
        if self._closed:
            raise RedisConnectionError("pipelined GETs are closed")
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._pending.append((key, future))
        self._wake.set()
        # Started on first use and again if it ever ended: it only ends by cancellation.
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_batches(), name="redis-pipelined-gets")
        with tracing.span("GET", **_SPAN):
            return await future

    async def aclose(self) -> None:
        """Fails what waits, stops sending and closes the connection."""
        self._closed = True
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        _fail(self._pending, "pipelined GETs are closed")
        self._pending = []
        await self._drop_connection()

    async def _send_batches(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._send(batch)

    async def _send(self, batch: list[_Waiter]) -> None:
        reused = self._connection is not None
        try:
            try:
                await self._exchange(batch)
            except RedisConnectionError:
                if not reused:
                    raise
                # A connection the server closed while it was idle (its idle timeout, a
                # restart): GETs change nothing, so the batch goes once more on a new one. A
                # timeout is not retried (common/redis_client.py).
                await self._drop_connection()
                await self._exchange(batch)
        except BaseException as exc:
            # The connection may hold a part of a reply: it is of no use to the next batch.
            await self._drop_connection()
            _fail(batch, f"pipelined GET failed: {exc!r}")
            if not isinstance(exc, Exception):
                raise

    async def _exchange(self, batch: list[_Waiter]) -> None:
        """Sends the batch and reads a reply for each GET, also for callers gone meanwhile."""
        connection = await self._connected()
        await connection.send_packed_command(
            connection.pack_commands([("GET", key) for key, _ in batch]), check_health=False
        )
        for _, future in batch:
            try:
                value = await connection.read_response()
            except ResponseError as exc:
                # An error reply (a key of another type) is this GET's alone, and read whole.
                if not future.done():
                    future.set_exception(exc)
                    future.exception()
                continue
            if not future.done():
                future.set_result(value)

    async def _connected(self) -> _Connection:
        if self._connection is None:
            connection = self._pool.make_connection()
            try:
                await connection.connect()
            except BaseException:
                with contextlib.suppress(Exception):
                    await connection.disconnect()
                raise
            self._connection = connection
        return self._connection

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect()


def _fail(waiters: list[_Waiter], reason: str) -> None:
    for _, future in waiters:
        if not future.done():
            # One exception per caller: a shared one would gather every caller's traceback.
            future.set_exception(RedisConnectionError(reason))
            # Retrieved here: a caller that stopped waiting must not leave it "never retrieved".
            future.exception()
