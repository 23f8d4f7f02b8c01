"""Every error a use case of the order service raises, as the problem it answers with: the one
place a domain error becomes a status, a detail and its headers (registered on the app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response

from common.http import problem
from order_service.domain.lifecycle import IllegalTransitionError
from order_service.domain.scheduling import UnacceptableStartTimeError
from order_service.lifecycle import ConcurrencyConflictError, OrderNotFoundError
from order_service.pagination import InvalidCursorError
from order_service.ports import (
    PaymentGatewayError,
    TransitionOutcomeUnknownError,
    WriteOutcomeUnknownError,
)
from order_service.services import (
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    LockTimeoutError,
)
from order_service.unit_of_work import DatabaseUnavailableError

__all__ = ["PROBLEMS", "order_problem_handlers"]

AnyRequest = Request[Any, Any, Any]
Handler = Callable[[AnyRequest, Any], Response[Any]]
RETRY_SOON = {"Retry-After": "1"}


def _not_found(request: AnyRequest, exc: OrderNotFoundError) -> Response[Any]:
    return problem(404, f"no order with id {request.path_params.get('order_id', exc)}")


def _illegal(request: AnyRequest, exc: IllegalTransitionError) -> Response[Any]:
    return problem(
        409,
        f"the order is {exc.current.value} and can no longer be {exc.target.value}",
        instance=request.url.path,
    )


def _fixed(status: int, detail: str, *, retry_soon: bool = False) -> Handler:
    """A problem whose answer does not depend on the error: status, detail, maybe Retry-After."""

    def answer(request: AnyRequest, exc: Exception) -> Response[Any]:
        headers = RETRY_SOON if retry_soon else None
        return problem(status, detail, headers=headers, instance=request.url.path)

    return answer


def _field_error(field: str, message: str, request: AnyRequest) -> Response[Any]:
    """As common.http's RequestValidationError answers: one entry per invalid field."""
    return problem(
        422,
        "the request has invalid fields",
        errors=[{"field": field, "message": message}],
        instance=request.url.path,
    )


def _bad_start(request: AnyRequest, exc: UnacceptableStartTimeError) -> Response[Any]:
    return _field_error(exc.field, str(exc), request)


def _bad_cursor(request: AnyRequest, exc: InvalidCursorError) -> Response[Any]:
    return _field_error("cursor", "is not valid", request)


def _count_db_unavailable(request: AnyRequest) -> None:
    container = getattr(request.app.state, "container", None)
    if container is not None:
        container.metrics.db_unavailable.inc()


def _db_unavailable(request: AnyRequest, exc: DatabaseUnavailableError) -> Response[Any]:
    _count_db_unavailable(request)
    return _DB_DOWN(request, exc)


_DB_DOWN = _fixed(503, "the order database is unavailable; retry shortly", retry_soon=True)


def _outcome_unknown(request: AnyRequest, exc: WriteOutcomeUnknownError) -> Response[Any]:
    # DESIGN.md §4 rule 6: the client can find out whether it committed.
    _count_db_unavailable(request)
    location = f"/orders/{exc.order_id}"
    return problem(
        503,
        f"the order database did not confirm the write in time; the order may exist: "
        f"GET {location} tells (404 means it was not stored)",
        headers={**RETRY_SOON, "Location": location},
        instance=request.url.path,
    )


def _change_unknown(request: AnyRequest, exc: TransitionOutcomeUnknownError) -> Response[Any]:
    # DESIGN.md §4 rule 6: the order's own resource shows whether the change was made.
    _count_db_unavailable(request)
    location = f"/orders/{exc.order_id}"
    return problem(
        503,
        f"the order database did not confirm the change; GET {location} shows whether it was made",
        headers={**RETRY_SOON, "Location": location},
        instance=request.url.path,
    )


PROBLEMS: dict[type[Exception], Handler] = {
    OrderNotFoundError: _not_found,
    IllegalTransitionError: _illegal,
    ConcurrencyConflictError: _fixed(409, "the order is changing; retry shortly", retry_soon=True),
    PaymentGatewayError: _fixed(
        503, "the payment gateway is unavailable; retry shortly", retry_soon=True
    ),
    IdempotencyKeyReusedError: _fixed(
        422, "this Idempotency-Key was already used with a different body"
    ),
    IdempotencyKeyInFlightError: _fixed(
        409, "a request with this Idempotency-Key is still in progress", retry_soon=True
    ),
    UnacceptableStartTimeError: _bad_start,
    InvalidCursorError: _bad_cursor,
    DatabaseUnavailableError: _db_unavailable,
    # The transaction waited too long for a lock and was rolled back: nothing committed.
    LockTimeoutError: _fixed(
        503,
        "the order database is busy (a lock wait timed out); nothing was stored, retry",
        retry_soon=True,
    ),
    WriteOutcomeUnknownError: _outcome_unknown,
    TransitionOutcomeUnknownError: _change_unknown,
}


def order_problem_handlers() -> dict[type[Exception], Handler]:
    """Litestar exception handlers for PROBLEMS (add them to the app's)."""
    return dict(PROBLEMS)
