"""A round-robin TCP balancer in front of the order service replicas, as a Service or a load
balancer would be: each new client connection goes to the next replica that accepts it."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter

__all__ = ["RoundRobinBalancer"]


class RoundRobinBalancer:
    def __init__(self, targets: list[tuple[str, int]]) -> None:
        self._targets = targets
        self._next = itertools.cycle(range(len(targets)))
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.connections: Counter[int] = Counter()  # per target port

    async def start(self) -> RoundRobinBalancer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in self._targets:  # a replica that refuses is skipped, like a failed health check
            host, port = self._targets[next(self._next)]
            try:
                pair = await asyncio.open_connection(host, port)
            except OSError:
                continue
            self.connections[port] += 1
            return pair
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await self._upstream()
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)
