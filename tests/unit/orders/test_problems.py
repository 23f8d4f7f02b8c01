"""Every error a use case raises answers as its problem, from the one table in api/problems.py."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import pytest
from litestar import post
from litestar.params import PathParameter
from litestar.testing import create_test_client

from common.http import exception_handlers
from order_service.api.problems import PROBLEMS, order_problem_handlers
from order_service.domain.lifecycle import IllegalTransitionError
from order_service.domain.order import OrderStatus
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

ORDER = "0190a3f2-5c1e-7b3a-8d4e-2f6a7b8c9d0e"
PATH = f"/orders/{ORDER}/cancel"

# (error raised by a use case, status, detail, Retry-After, field errors, instance)
CASES: list[tuple[Exception, int, str, str | None, list[dict[str, str]] | None, bool]] = [
    (OrderNotFoundError(ORDER), 404, f"no order with id {ORDER}", None, None, False),
    (
        IllegalTransitionError(uuid.UUID(ORDER), OrderStatus.CONFIRMED, OrderStatus.CANCELLED),
        409,
        "the order is confirmed and can no longer be cancelled",
        None,
        None,
        True,
    ),
    (ConcurrencyConflictError(ORDER), 409, "the order is changing; retry shortly", "1", None, True),
    (
        PaymentGatewayError("timeout"),
        503,
        "the payment gateway is unavailable; retry shortly",
        "1",
        None,
        True,
    ),
    (
        IdempotencyKeyReusedError("k"),
        422,
        "this Idempotency-Key was already used with a different body",
        None,
        None,
        True,
    ),
    (
        IdempotencyKeyInFlightError("k"),
        409,
        "a request with this Idempotency-Key is still in progress",
        "1",
        None,
        True,
    ),
    (
        UnacceptableStartTimeError("must be in the future"),
        422,
        "the request has invalid fields",
        None,
        [{"field": "scheduled_time", "message": "must be in the future"}],
        True,
    ),
    (
        InvalidCursorError("bad"),
        422,
        "the request has invalid fields",
        None,
        [{"field": "cursor", "message": "is not valid"}],
        True,
    ),
    (
        DatabaseUnavailableError("down"),
        503,
        "the order database is unavailable; retry shortly",
        "1",
        None,
        True,
    ),
    (
        LockTimeoutError("lock wait"),
        503,
        "the order database is busy (a lock wait timed out); nothing was stored, retry",
        "1",
        None,
        True,
    ),
    (
        WriteOutcomeUnknownError(uuid.UUID(ORDER)),
        503,
        f"the order database did not confirm the write in time; the order may exist: "
        f"GET /orders/{ORDER} tells (404 means it was not stored)",
        "1",
        None,
        True,
    ),
    (
        TransitionOutcomeUnknownError(uuid.UUID(ORDER)),
        503,
        f"the order database did not confirm the change; GET /orders/{ORDER} shows whether it "
        "was made",
        "1",
        None,
        True,
    ),
]


def answer_to(error: Exception) -> Any:
    @post("/orders/{order_id:str}/cancel", status_code=200)
    async def raising(order_id: Annotated[str, PathParameter()]) -> None:
        raise error

    handlers = {**exception_handlers(), **order_problem_handlers()}
    with create_test_client(
        [raising], exception_handlers=handlers, debug=False, logging_config=None
    ) as client:
        return client.post(PATH)


@pytest.mark.parametrize("case", CASES, ids=lambda case: type(case[0]).__name__)
def test_each_use_case_error_answers_with_its_problem(case):
    error, status, detail, retry_after, errors, has_instance = case
    response = answer_to(error)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers.get("retry-after") == retry_after
    body = response.json()
    assert body["status"] == status and body["detail"] == detail
    assert body.get("errors") == errors
    assert body.get("instance") == (PATH if has_instance else None)


@pytest.mark.parametrize(
    "error",
    [WriteOutcomeUnknownError(uuid.UUID(ORDER)), TransitionOutcomeUnknownError(uuid.UUID(ORDER))],
    ids=type,
)
def test_an_unknown_write_outcome_points_at_the_order_that_tells(error):
    assert answer_to(error).headers["location"] == f"/orders/{ORDER}"


def test_every_mapped_error_has_a_case_here():
    assert set(PROBLEMS) == {type(case[0]) for case in CASES}
