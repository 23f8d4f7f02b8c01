"""A minimal HTTP/1.1 keep-alive client on asyncio streams.

The load generator shares two cores with the system it loads, so every client-side microsecond
is taken from the server. httpx costs several times more CPU per request than this (measured in
docs/benchmark.md); one connection per worker task needs no pool, no locks and no URL parsing
per request. It speaks just enough HTTP/1.1 for our own services: Content-Length and chunked
bodies, ``Connection: close``, and nothing else (no redirects, no TLS, no proxies).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["HttpConnection", "HttpError", "Response", "Target", "parse_target"]

_IDLE_RECONNECT_SECONDS = 4.0  # below uvicorn's 5 s keep-alive: never write into a closing socket
_MAX_HEADER_BYTES = 65536


class HttpError(Exception):
    """The connection failed or the response was not valid HTTP/1.1; the kind is in ``kind``."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    base_path: str

    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"only plain http://host[:port] URLs are supported, got {url!r}")
    return Target(parts.hostname, parts.port or 80, parts.path.rstrip("/"))


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpConnection:
    """One keep-alive connection, used by one task at a time (no locking by design)."""

    def __init__(self, target: Target, *, connect_timeout: float = 5.0) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_used = 0.0
        self.connects = 0

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.target.host, self.target.port),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise HttpError("connect", repr(exc)) from exc
        self._reader, self._writer = reader, writer
        self.connects += 1
        return reader, writer

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: bytes = b"",
        time_limit: float = 30.0,
    ) -> Response:
        """``headers`` are pre-encoded ``Name: value\\r\\n`` lines (built once by the caller)."""
        try:
            return await asyncio.wait_for(self._request(method, path, body, headers), time_limit)
        except TimeoutError as exc:
            self.close()
            raise HttpError("timeout", f"{method} {path} after {time_limit}s") from exc
        except HttpError:
            self.close()
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self.close()
            raise HttpError("connection", repr(exc)) from exc

    async def _request(
        self, method: str, path: str, body: bytes | None, headers: bytes
    ) -> Response:
        now = time.monotonic()
        if self._writer is not None and now - self._last_used > _IDLE_RECONNECT_SECONDS:
            self.close()
        if self._writer is None or self._reader is None:
            reader, writer = await self._connect()
        else:
            reader, writer = self._reader, self._writer
        head = (
            f"{method} {self.target.base_path}{path} HTTP/1.1\r\n"
            f"Host: {self.target.host_header}\r\n"
        ).encode() + headers
        if body is not None:
            head += b"Content-Length: %d\r\n\r\n" % len(body)
            writer.write(head + body)
        else:
            writer.write(head + b"\r\n")
        response = await _read_response(reader, head_only=method == "HEAD")
        self._last_used = time.monotonic()
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None


async def _read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> Response:
    raw = await reader.readuntil(b"\r\n\r\n")
    if len(raw) > _MAX_HEADER_BYTES:
        raise HttpError("protocol", "response head too large")
    lines = raw.decode("latin-1").split("\r\n")
    status_line = lines[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
        raise HttpError("protocol", f"bad status line {lines[0]!r}")
    try:
        status = int(status_line[1])
    except ValueError as exc:
        raise HttpError("protocol", f"bad status line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if head_only or status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, b"")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return Response(status, headers, await _read_chunked(reader))
    length = headers.get("content-length")
    if length is None:
        # No length and not chunked: the body runs to the end of the connection.
        body = await reader.read()
        headers["connection"] = "close"
        return Response(status, headers, body)
    return Response(status, headers, await reader.readexactly(int(length)))


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            # Trailers, if any, end with an empty line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
