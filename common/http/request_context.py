"""Every request's context: its X-Request-ID (accepted or generated, echoed, bound to the logs as
correlation_id) and its count and latency by route template."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from common.observability import Metrics

__all__ = ["HttpMetrics", "RequestContextMiddleware", "request_id_from", "request_id_of"]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class HttpMetrics:
    def __init__(self, metrics: Metrics) -> None:
        self.requests = metrics.counter(
            "http_requests_total",
            "HTTP requests by route, method and status",
            ("route", "method", "status"),
        )
        self.latency = metrics.histogram(
            "http_request_duration_seconds",
            "HTTP request latency by route and method",
            ("route", "method"),
        )
        self.in_flight = metrics.gauge("http_requests_in_flight", "HTTP requests being served")

    def record(self, route: str, method: str, status: int, started: float) -> None:
        """One answered request: its count by status and its latency since ``started``."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(time.perf_counter() - started)


def request_id_from(scope: Scope) -> str:
    """The client's X-Request-ID when it is well formed, else a new one; kept in the scope."""
    request_id = ""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _REQUEST_ID_RE.match(candidate):
                request_id = candidate
            break
    if not request_id:
        request_id = uuid.uuid4().hex
    scope.setdefault("state", {})["request_id"] = request_id
    return request_id


class RequestContextMiddleware:
    """Accepts or generates X-Request-ID, binds it to logs as correlation_id, echoes it, and
    records request count and latency by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        encoded_id = request_id.encode()
        status_holder = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", encoded_id))
                message["headers"] = headers
            await send(message)

        started = time.perf_counter()
        self.metrics.in_flight.inc()
        structlog.contextvars.bind_contextvars(correlation_id=request_id)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
            self.metrics.in_flight.dec()
            route = scope.get("path_template") or "unmatched"
            method = scope.get("method", "")
            self.metrics.record(route, str(method), status_holder[0], started)


def request_id_of(request: Request[Any, Any, Any]) -> str:
    state = request.scope.get("state", {})
    value = state.get("request_id") if isinstance(state, dict) else None
    return str(value) if value else uuid.uuid4().hex
