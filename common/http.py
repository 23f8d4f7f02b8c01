"""HTTP plumbing shared by every Litestar app: RFC 9457 problems, request ids, metrics, health."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec
import structlog
from litestar import Request, Response, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.observability import Metrics, get_logger

__all__ = [
    "PROBLEM_JSON",
    "FieldError",
    "FieldErrorDoc",
    "HttpMetrics",
    "ProblemDetails",
    "RequestContextMiddleware",
    "RequestValidationError",
    "ServiceUnavailableError",
    "exception_handlers",
    "health_handlers",
    "metrics_handler",
    "problem",
    "problem_responses",
    "request_id_from",
]

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

log = get_logger(__name__)

FieldError = dict[str, str]  # {"field": ..., "message": ...}


class RequestValidationError(Exception):
    """Invalid fields; becomes a 422 problem with one entry per field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


class MalformedRequestError(Exception):
    """The body is not parseable at all; becomes a 400 problem."""


class ServiceUnavailableError(Exception):
    """A dependency the answer needs is down; becomes a 503 problem with Retry-After."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


class FieldErrorDoc(msgspec.Struct):
    field: str
    message: str


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details, as every error response of every service looks (OpenAPI)."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldErrorDoc] | None = None


_PROBLEM_DESCRIPTIONS = {
    400: "Malformed request (body not parseable, bad header)",
    401: "Missing or invalid API key (only when API keys are configured)",
    404: "No such resource",
    409: "Conflict (for example the same Idempotency-Key still in flight)",
    413: "Request body over the size limit",
    415: "Unsupported media type",
    422: "Invalid fields, one entry per field",
    429: "Rate limit exceeded (only when a rate limit is configured); see Retry-After",
    503: "A dependency needed for the answer is down, or the request timed out; see Retry-After",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem responses a route can give (application/problem+json)."""
    return {
        status: ResponseSpec(
            data_container=ProblemDetails,
            media_type=PROBLEM_JSON,
            description=_PROBLEM_DESCRIPTIONS.get(status, _TITLES.get(status, "Error")),
        )
        for status in statuses
    }


BodyValidator = Callable[[bytes], list[FieldError]]


def _raw_body(request: Request[Any, Any, Any]) -> bytes | None:
    # Exception handlers are synchronous; the body Litestar already read is cached on the request.
    body = getattr(request, "_body", None)
    return body if isinstance(body, bytes) else None


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    handler = request.scope.get("route_handler")
    validator: BodyValidator | None = None
    if isinstance(handler, HTTPRouteHandler):
        validator = handler.opt.get("body_validator")
    extra = exc.extra if isinstance(exc.extra, list) else []
    from_body = any(isinstance(e, dict) and e.get("source") == "body" for e in extra)
    raw = _raw_body(request)
    if validator is not None and raw is not None and (from_body or not extra):
        try:
            errors = validator(raw)
        except MalformedRequestError as malformed:
            return problem(400, str(malformed), instance=request.url.path)
        if errors:
            return problem(
                422, "the request has invalid fields", errors=errors, instance=request.url.path
            )
    if extra:
        errors = [
            {"field": str(e.get("key", "")), "message": str(e.get("message", ""))}
            for e in extra
            if isinstance(e, dict)
        ]
        status = 400 if from_body and "malformed" in str(exc.detail).lower() else 422
        if from_body and not errors:
            status = 400
        return problem(status, "the request is invalid", errors=errors, instance=request.url.path)
    return problem(400, str(exc.detail), instance=request.url.path)


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    headers = dict(exc.headers or {})
    return problem(exc.status_code, str(exc.detail), headers=headers, instance=request.url.path)


def _on_request_validation(
    request: Request[Any, Any, Any], exc: RequestValidationError
) -> Response[Any]:
    return problem(
        422, "the request has invalid fields", errors=exc.errors, instance=request.url.path
    )


def _on_malformed(request: Request[Any, Any, Any], exc: MalformedRequestError) -> Response[Any]:
    return problem(400, str(exc), instance=request.url.path)


def _on_unavailable(request: Request[Any, Any, Any], exc: ServiceUnavailableError) -> Response[Any]:
    return problem(
        503, exc.detail, headers={"Retry-After": str(exc.retry_after)}, instance=request.url.path
    )


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled_error", path=request.url.path, error=repr(exc), exc_info=exc)
    return problem(500, "unexpected error; see the service log", instance=request.url.path)


def exception_handlers() -> dict[Any, Any]:
    return {
        ValidationException: _on_validation,
        RequestValidationError: _on_request_validation,
        MalformedRequestError: _on_malformed,
        ServiceUnavailableError: _on_unavailable,
        HTTPException: _on_http,
        Exception: _on_unexpected,
    }


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
        if scope["type"] != "http":
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


Check = Callable[[], Awaitable[bool]]


def health_handlers(
    checks: Mapping[str, Check], required: frozenset[str], timeout: float = 1.0
) -> list[HTTPRouteHandler]:
    """/health/live (the process answers) and /health/ready (each dependency reported; 503 when
    a required one is down, 200 with ``degraded`` when only an optional one is)."""

    @get("/health/live", include_in_schema=True, sync_to_thread=False, tags=["health"])
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health/ready", include_in_schema=True, tags=["health"])
    async def ready() -> Response[dict[str, Any]]:
        async def run(check: Check) -> bool:
            try:
                return await asyncio.wait_for(check(), timeout)
            except Exception:
                return False

        names = list(checks)
        results = await asyncio.gather(*(run(checks[n]) for n in names))
        report = {n: ("up" if ok else "down") for n, ok in zip(names, results, strict=True)}
        required_down = [n for n in names if n in required and report[n] == "down"]
        any_down = any(v == "down" for v in report.values())
        status = "down" if required_down else ("degraded" if any_down else "ok")
        return Response(
            {"status": status, "checks": report},
            status_code=503 if required_down else 200,
        )

    return [live, ready]


def metrics_handler(metrics: Metrics) -> HTTPRouteHandler:
    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics_endpoint() -> Response[bytes]:
        return Response(
            generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST, status_code=200
        )

    return metrics_endpoint
