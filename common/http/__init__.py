"""HTTP plumbing shared by every Litestar app: RFC 9457 problems (problems.py), request ids and
request metrics (request_context.py), health and metrics endpoints (health.py)."""

from common.http.health import health_handlers, metrics_handler
from common.http.problems import (
    PROBLEM_JSON,
    FieldError,
    FieldErrorDoc,
    MalformedRequestError,
    ProblemDetails,
    RequestValidationError,
    ServiceUnavailableError,
    exception_handlers,
    problem,
    problem_responses,
)
from common.http.request_context import (
    HttpMetrics,
    RequestContextMiddleware,
    request_id_from,
    request_id_of,
)

__all__ = [
    "PROBLEM_JSON",
    "FieldError",
    "FieldErrorDoc",
    "HttpMetrics",
    "MalformedRequestError",
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
    "request_id_of",
]
