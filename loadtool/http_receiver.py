"""Receivers on a free local port for what the system sends out (OTLP spans, webhooks, mail):
a TCP server with its lifecycle, and a minimal HTTP/1.1 one on it (keep-alive, Content-Length
bodies, no framework) whose subclasses answer ``handle``."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

__all__ = ["HttpReceiver", "LocalServer", "Reply"]

Reply = tuple[bytes, bytes, bytes]  # status line text, content type, body


class LocalServer:
    """A TCP server on a free local port for one test or bench run: ``async with`` starts it,
    leaving closes it and ends every connection. Subclasses speak the protocol in
    ``session``."""

    line_limit = 1 << 16

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self.host, 0, limit=self.line_limit)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(BaseException):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self.session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        except ValueError:  # a malformed request line or length
            return
        except asyncio.CancelledError:
            # Closing: asyncio's stream callback would report a cancelled connection task as an
            # error; it ends here quietly instead.
            return
        finally:
            self._connections.discard(task)
            writer.close()


class HttpReceiver(LocalServer):
    """``async with Receiver() as r:`` - the system posts to ``r.base_url`` + a path."""

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            parts = request_line.decode("latin-1").split(" ")
            status, content_type, answer = self.handle(
                parts[1] if len(parts) > 1 else "", headers, body
            )
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + content_type
                + b"\r\nContent-Length: "
                + str(len(answer)).encode()
                + b"\r\n\r\n"
                + answer
            )
            await writer.drain()
