"""RFC 9457 problem details: the one error format of every service, its OpenAPI entries and the
exception handlers that map errors to it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from common.observability import get_logger

__all__ = [
    "PROBLEM_JSON",
    "BodyValidator",
    "FieldError",
    "FieldErrorDoc",
    "MalformedRequestError",
    "ProblemDetails",
    "RequestValidationError",
    "ServiceUnavailableError",
    "exception_handlers",
    "problem",
    "problem_responses",
]

PROBLEM_JSON = "application/problem+json"

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
