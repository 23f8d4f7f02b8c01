"""Broker connections that come back on their own after a broker restart, and that fail over
between the nodes of a cluster.

RABBITMQ_URL may list several nodes, comma-separated (``amqp://u:p@a:5672/v,amqp://u:p@b:5672/v``;
a later URL may leave out what the first one says, e.g. ``amqp://u:p@a/v,b:5673``). A process
connects to the first node that answers; when its node dies, or a reconnect attempt fails, the
next attempt goes to the next node in the list, round the list. aio-pika's robust connection
alone reconnects to its one URL forever (mosquito/aio-pika#141), so ``FailoverRobustConnection``
changes the URL between attempts; everything aio-pika restores after a reconnect (channels,
publisher confirms, consumers) is restored on the new node as it would be on the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika import RobustConnection
from aio_pika.abc import AbstractConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from common.observability import get_logger

__all__ = [
    "FailoverRobustConnection",
    "UrlRotation",
    "connect_any",
    "connect_robust_forever",
    "parse_broker_urls",
    "redact",
]

log = get_logger(__name__)

_SCHEMES = ("amqp", "amqps")


def parse_broker_urls(value: str | Sequence[str]) -> tuple[URL, ...]:
    """One or more AMQP URLs, comma-separated; a later entry inherits from the first the parts it
    leaves out (scheme, user, password, vhost, query), so ``host:port`` alone names another node.

    Raises ValueError naming the bad entry: an operator's typo must fail at start-up.
    """
    parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError("no broker URL given")
    first = _parse_one(parts[0], None)
    urls = [first]
    for part in parts[1:]:
        urls.append(_parse_one(part, first))
    return tuple(urls)


def _parse_one(text: str, first: URL | None) -> URL:
    if first is not None and "://" not in text:
        # host[:port] or host[:port]/vhost: the rest comes from the first URL.
        host_part, _, path = text.partition("/")
        candidate = URL(f"{first.scheme}://placeholder@{host_part}")
        url = first.with_host(candidate.host or "")
        url = url.with_port(candidate.explicit_port)
        if path:
            url = url.with_path("/" + path, encoded=True)
        text_url = url
    else:
        text_url = URL(text)
    if text_url.scheme not in _SCHEMES:
        raise ValueError(f"broker URL {redact(text_url)!r} must start with amqp:// or amqps://")
    if not text_url.host:
        raise ValueError(f"broker URL {redact(text_url)!r} has no host")
    if first is not None and "://" in text and not text_url.user and first.user:
        text_url = text_url.with_user(first.user).with_password(first.password)
    return text_url


def redact(url: URL | str) -> str:
    url = URL(str(url))
    return str(url.with_password("******")) if url.password else str(url)


# Frames a connection may queue for its socket writer. aiormq's default (10) makes the 11th
# publish of a batch wait for the writer while it holds its channel's lock, and every later one
# then waits its turn for the lock: one publish per event-loop turn (``ConfirmingPublisher``).
# A batch's frames now queue at once; the relay's batches bound how many there are.
FRAME_BUFFER_SIZE = 8192


def allow_frame_bursts() -> None:
    """aiormq reads the bound from its class when a connection (or a reconnect) is made, and
    offers no other way to set it; every connection of the process gets it."""
    current = aiormq.Connection.FRAME_BUFFER_SIZE
    aiormq.Connection.FRAME_BUFFER_SIZE = max(current, FRAME_BUFFER_SIZE)


class UrlRotation:
    """Which node to try next: the current one until it fails, then the next, round the list."""

    def __init__(self, urls: Sequence[URL]) -> None:
        if not urls:
            raise ValueError("no broker URL given")
        self.urls = tuple(urls)
        self.index = 0
        self.switches = 0

    @property
    def current(self) -> URL:
        return self.urls[self.index]

    def failed(self, url: URL) -> URL:
        """``url`` failed (refused, or its connection died): move on past it unless that was
        done already (a failed attempt also closes its half-open connection); the next URL."""
        if len(self.urls) > 1 and url == self.current:
            self.index = (self.index + 1) % len(self.urls)
            self.switches += 1
        return self.current


class FailoverRobustConnection(RobustConnection):
    """aio-pika's robust connection over a list of nodes: each (re)connect attempt uses the
    rotation's current URL, and a failed attempt or a lost connection moves the rotation on.

    The hook is aio-pika's private per-attempt method (``RobustConnection.__connect_transport``,
    name-mangled); tests/unit/messaging/test_broker_urls.py fails loudly if an aio-pika upgrade
    renames it, rather than failover silently degrading to one node.
    """

    def __init__(
        self,
        urls: Sequence[URL],
        loop: asyncio.AbstractEventLoop | None = None,
        **kwargs: Any,
    ) -> None:
        self.rotation = UrlRotation(urls)
        allow_frame_bursts()
        super().__init__(self.rotation.current, loop=loop, **kwargs)

    async def _RobustConnection__connect_transport(self) -> None:
        attempt = self.url = self.rotation.current
        try:
            await _ORIGINAL_CONNECT_TRANSPORT(self)
        except Exception as exc:
            if len(self.rotation.urls) > 1:
                log.warning(
                    "broker_node_unreachable",
                    node=redact(attempt),
                    next=redact(self.rotation.failed(attempt)),
                    error=repr(exc)[:200],
                )
            raise
        log.info("broker_connected", node=redact(attempt))

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        lost = self.url
        if not (self._close_called or self.is_closed) and lost == self.rotation.current:
            log.warning(
                "broker_connection_lost", node=redact(lost), next=redact(self.rotation.failed(lost))
            )
        await super()._on_connection_close(closing)


_ORIGINAL_CONNECT_TRANSPORT = RobustConnection._RobustConnection__connect_transport  # type: ignore[attr-defined]


async def connect_robust_forever(
    url: str | Sequence[str],
    *,
    client_name: str,
    initial_backoff: float = 0.2,
    max_backoff: float = 5.0,
    reconnect_interval: float = 1.0,
    attempt_timeout: float = 10.0,
) -> FailoverRobustConnection:
    """Connect to any live node of ``url`` (one URL or a comma-separated list), retrying with
    backoff until one answers; the connection then reconnects on its own, to any live node.

    aio-pika's robust connection reconnects after it was up once, but its first connect fails
    fast; a service that starts before the broker must keep trying instead of dying.
    """
    urls = parse_broker_urls(url)
    backoff = initial_backoff
    attempts = 0
    while True:
        connection = FailoverRobustConnection(
            urls,
            client_properties={"connection_name": client_name},
            reconnect_interval=reconnect_interval,
            fail_fast="true",
        )
        try:
            await connection.connect(timeout=attempt_timeout)
            return connection
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as exc:
            with contextlib.suppress(Exception):
                await connection.close()
            # The next node first; back off only once a whole round of the list failed.
            urls = urls[1:] + urls[:1]
            attempts += 1
            if attempts % len(urls) == 0:
                log.warning("broker_connect_failed", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, max_backoff)


async def connect_any(url: str | Sequence[str], *, timeout: float = 10.0) -> AbstractConnection:
    """A plain (not robust) connection to the first node of the list that answers, for short
    command-line jobs (the parking-lot CLI)."""
    last: BaseException | None = None
    allow_frame_bursts()
    for candidate in parse_broker_urls(url):
        try:
            return await aio_pika.connect(candidate, timeout=timeout)
        except (TimeoutError, *CONNECTION_EXCEPTIONS) as exc:
            log.warning("broker_node_unreachable", node=redact(candidate), error=repr(exc)[:200])
            last = exc
    assert last is not None
    raise last
