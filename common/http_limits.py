"""Small ASGI middlewares that bound what one request or one client can cost: a request time
limit (503 problem) and a per-client token-bucket rate limit (429 problem with Retry-After).

Plain ASGI so any of the services' Litestar apps can use them; answers are RFC 9457 problems.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from common.http import PROBLEM_JSON

__all__ = [
    "DEFAULT_EXEMPT_PREFIXES",
    "RateLimitMiddleware",
    "RequestTimeoutMiddleware",
    "TokenBucketLimiter",
    "send_problem",
]

# Probes and scrapes must keep working while a client is throttled or the app is slow.
DEFAULT_EXEMPT_PREFIXES: tuple[str, ...] = ("/health/", "/metrics")

_TITLES = {
    401: "Unauthorized",
    429: "Too Many Requests",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


async def send_problem(
    send: Send,
    scope: Scope,
    status: int,
    detail: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    """An ``application/problem+json`` response written straight to ASGI ``send``."""
    body = msgspec.json.encode(
        {
            "type": "about:blank",
            "title": _TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
            "instance": scope.get("path", ""),
        }
    )
    raw_headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _exempt(scope: Scope, prefixes: Iterable[str]) -> bool:
    path = str(scope.get("path", ""))
    return any(path.startswith(p) for p in prefixes)


class RequestTimeoutMiddleware:
    """Answers 503 (with Retry-After) when the app has not started its response within
    ``timeout`` seconds, and cancels the handler so it stops holding a connection or a pool slot.

    A response that has already started is left to finish: its status line is on the wire.
    Cancelling a POST does not undo a commit that already happened; clients retry with the same
    Idempotency-Key to learn the outcome.
    """

    def __init__(
        self,
        app: ASGIApp,
        timeout: float,
        *,
        exempt_prefixes: Iterable[str] = DEFAULT_EXEMPT_PREFIXES,
        on_timeout: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.timeout = timeout
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.on_timeout = on_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != ScopeType.HTTP
            or self.timeout <= 0
            or _exempt(scope, self.exempt_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        started = False
        # asyncio.timeout in the request's own task: no extra task per request on the hot path.
        deadline = asyncio.timeout(self.timeout)

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and not started:
                started = True
                deadline.reschedule(None)  # the answer is under way: let it finish
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, send_wrapper)
        except TimeoutError:
            if not deadline.expired() or started:
                raise  # not ours (raised by the app itself), or too late to answer differently
        else:
            return
        if self.on_timeout is not None:
            self.on_timeout(scope)
        await send_problem(
            send,
            scope,
            503,
            f"the request did not complete within {self.timeout:g} s; retry shortly",
            {"Retry-After": "1"},
        )


class TokenBucketLimiter:
    """One token bucket per key (client address): ``rate`` tokens a second, up to ``burst``.

    Memory is bounded: at most ``max_keys`` buckets, least recently used dropped first (a
    dropped bucket comes back full, which only ever favours the client).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, key: str) -> float:
        """0.0 when a token was taken; otherwise the seconds until one is available."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def client_address(scope: Scope) -> str:
    """The peer address as the ASGI server reports it (behind a proxy, run uvicorn with
    ``--forwarded-allow-ips`` so it reflects X-Forwarded-For from trusted proxies only)."""
    client: Any = scope.get("client")
    if client:
        return str(client[0])
    return "unknown"


class RateLimitMiddleware:
    """429 problem with ``Retry-After`` (whole seconds, at least 1) once a client has used its
    burst and exceeds ``rate`` requests per second. Health and metrics paths are exempt."""

    def __init__(
        self,
        app: ASGIApp,
        rate: float,
        burst: int | None = None,
        *,
        exempt_prefixes: Iterable[str] = DEFAULT_EXEMPT_PREFIXES,
        key: Callable[[Scope], str] = client_address,
        on_limited: Callable[[Scope], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self.enabled = rate > 0
        self.limiter = (
            TokenBucketLimiter(rate, burst or max(1, math.ceil(rate)), clock=clock)
            if self.enabled
            else None
        )
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.key = key
        self.on_limited = on_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.limiter is None
            or scope["type"] != ScopeType.HTTP
            or _exempt(scope, self.exempt_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.acquire(self.key(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        if self.on_limited is not None:
            self.on_limited(scope)
        retry_after = max(1, math.ceil(wait))
        await send_problem(
            send,
            scope,
            429,
            f"rate limit of {self.limiter.rate:g} requests/s exceeded; retry after {retry_after} s",
            {"Retry-After": str(retry_after)},
        )
