"""A webhook receiver of the test's own: counts every delivery where it lands, by its
idempotency key, so the audit sees a notification sent twice even if the sender recorded it
once. Plain asyncio HTTP/1.1 (keep-alive, Content-Length bodies), no framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

__all__ = ["Delivery", "WebhookReceiver"]


@dataclass(frozen=True)
class Delivery:
    key: str  # the idempotency-key header: "<event_id>:<kind>"
    order_id: str | None
    kind: str | None
    event_type: str | None


class WebhookReceiver:
    """``async with WebhookReceiver() as hook:`` - point NOTIFY_WEBHOOK_URL at ``hook.url``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.deliveries: list[Delivery] = []
        self.malformed = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def counts(self) -> Counter[str]:
        return Counter(d.key for d in self.deliveries)

    async def __aenter__(self) -> WebhookReceiver:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
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
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self._record(headers, body)
                writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    def _record(self, headers: dict[str, str], body: bytes) -> None:
        key = headers.get("idempotency-key")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not key or not isinstance(payload, dict):
            self.malformed += 1
            return
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        order_id = data.get("order_id") if data else None
        self.deliveries.append(
            Delivery(
                key=key,
                order_id=str(order_id) if order_id is not None else None,
                kind=payload.get("kind"),
                event_type=payload.get("event_type"),
            )
        )
