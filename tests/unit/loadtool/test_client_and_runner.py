"""The raw HTTP client and the load loop against a tiny in-process HTTP/1.1 server."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from loadtool.client import HttpConnection, HttpError, parse_target
from loadtool.generator import GeneratorConfig, OrderGenerator
from loadtool.runner import LoadConfig, run_load


class TinyServer:
    """Answers POST /orders with 201 (every ``fail_every``-th with 503), GET /chunked chunked."""

    def __init__(self, fail_every: int = 0) -> None:
        self.fail_every = fail_every
        self.requests = 0
        self.connections = 0
        self.bodies: list[dict[str, object]] = []
        self.headers: list[dict[str, str]] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                _method, path, _ = lines[0].split(" ")
                headers = {
                    k.lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests += 1
                self.headers.append(headers)
                if path == "/chunked":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
                    )
                elif path == "/close":
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
                    await writer.drain()
                    writer.close()
                    return
                elif self.fail_every and self.requests % self.fail_every == 0:
                    problem = b'{"status":503}'
                    writer.write(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n"
                        b"\r\n%s" % (len(problem), problem)
                    )
                else:
                    self.bodies.append(json.loads(body))
                    out = json.dumps({"id": str(uuid.uuid4()), **json.loads(body)}).encode()
                    writer.write(
                        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(out), out)
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[TinyServer]:
    tiny = TinyServer()
    srv = await asyncio.start_server(tiny.handle, "127.0.0.1", 0)
    tiny.port = srv.sockets[0].getsockname()[1]
    yield tiny
    srv.close()


async def test_keep_alive_reuses_one_connection(server: TinyServer) -> None:
    conn = HttpConnection(parse_target(f"http://127.0.0.1:{server.port}"))
    for _ in range(5):
        response = await conn.request("POST", "/orders", body=b'{"a":1}')
        assert response.status == 201
    conn.close()
    assert server.connections == 1
    assert conn.connects == 1


async def test_chunked_body_and_connection_close_are_handled(server: TinyServer) -> None:
    conn = HttpConnection(parse_target(f"http://127.0.0.1:{server.port}"))
    assert (await conn.request("GET", "/chunked")).body == b"hello world"
    assert (await conn.request("GET", "/close")).body == b"ok"
    assert (await conn.request("GET", "/chunked")).status == 200  # reconnected
    assert conn.connects == 2
    conn.close()


async def test_refused_connection_is_an_http_error() -> None:
    conn = HttpConnection(parse_target("http://127.0.0.1:1"))
    with pytest.raises(HttpError) as info:
        await conn.request("GET", "/")
    assert info.value.kind == "connect"


def test_only_plain_http_targets() -> None:
    assert parse_target("http://127.0.0.1:8080/base/").base_path == "/base"
    with pytest.raises(ValueError):
        parse_target("https://example.com")


async def test_run_load_counts_accepted_and_errors(server: TinyServer) -> None:
    server.fail_every = 4
    result = await run_load(
        LoadConfig(url=f"http://127.0.0.1:{server.port}", count=40, concurrency=4),
        OrderGenerator(GeneratorConfig(idempotency_keys=True), seed=1),
    )
    assert result.sent == 40
    assert len(result.accepted) == 30
    assert result.errors == {"503": 10}
    assert len(result.latencies) == 30
    assert server.connections == 4
    assert all("idempotency-key" in h and "x-request-id" in h for h in server.headers)
    assert len({a.order_id for a in result.accepted}) == 30


async def test_run_load_paces_an_offered_rate(server: TinyServer) -> None:
    result = await run_load(
        LoadConfig(url=f"http://127.0.0.1:{server.port}", count=20, concurrency=2, rate=100),
        OrderGenerator(GeneratorConfig(), seed=1),
    )
    assert len(result.accepted) == 20
    assert result.elapsed >= 0.18  # 20 requests at 100/s: the last is due at 0.19 s
    assert len(result.latency_from_schedule) == 20


async def test_run_load_stops_at_the_duration(server: TinyServer) -> None:
    result = await run_load(
        LoadConfig(
            url=f"http://127.0.0.1:{server.port}", count=None, concurrency=2, rate=50, duration=0.3
        ),
        OrderGenerator(GeneratorConfig(), seed=1),
    )
    assert 10 <= result.sent <= 16
