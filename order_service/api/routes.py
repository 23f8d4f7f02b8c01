"""/orders endpoints: parse, call one use case, map its result to a response. Errors become
problems in order_service/api/problems.py."""

from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from common import tracing
from common.http import (
    MalformedRequestError,
    RequestValidationError,
    problem_responses,
    request_id_of,
)
from common.http_auth import caller_of
from order_service.api.cached_reads import MISSED
from order_service.api.new_order_body import NewOrderBody
from order_service.api.schemas import (
    OrderListResponse,
    OrderResponse,
    decode_new_order,
    render_order,
    request_fingerprint,
    to_response,
)
from order_service.container import Container
from order_service.domain.order import NewOrder, OrderStatus
from order_service.services import StoredResponse

__all__ = ["cancel_order", "create_order", "get_order", "list_orders"]

JSON = "application/json"


def _container(request: Request[Any, Any, Any]) -> Container:
    container: Container = request.app.state.container
    return container


def _valid_idempotency_key(value: str) -> bool:
    return 0 < len(value) <= 255 and value.isascii() and value.isprintable()


def scoped_idempotency_key(key: str, caller: str | None) -> str:
    """The key as stored: one caller's key never replays, or blocks, another caller's request.

    With API keys on, the caller's id (a digest of its API key) and a digest of its key (so the
    result fits the column); with keys off (local use) the key itself.
    """
    if caller is None:
        return key
    return f"{caller[:32]}:{hashlib.sha256(key.encode()).hexdigest()}"


@post(
    "/orders",
    dto=NewOrderBody,
    return_dto=None,
    # An empty body never reaches the DTO; this names it malformed (400), not missing (422).
    opt={"body_validator": lambda raw: decode_new_order(raw)[1]},
    summary="Create an order",
    status_code=201,
    responses={
        201: ResponseSpec(data_container=OrderResponse, description="The new order"),
        **problem_responses(400, 401, 409, 413, 422, 429, 503),
    },
    tags=["orders"],
)
async def create_order(
    request: Request[Any, Any, Any],
    data: JSONBody[NewOrder],
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            required=False,
            description="Replays the first response for the same key and body.",
        ),
    ] = None,
) -> Response[bytes]:
    container = _container(request)
    if idempotency_key is not None and not _valid_idempotency_key(idempotency_key):
        raise MalformedRequestError("Idempotency-Key must be 1-255 printable ASCII characters")
    container.intake.enter()
    try:
        result = await container.orders.create_order(
            data,
            correlation_id=request_id_of(request),
            idempotency_key=(
                None
                if idempotency_key is None
                else scoped_idempotency_key(idempotency_key, caller_of(request.scope))
            ),
            request_hash=request_fingerprint(data) if idempotency_key is not None else "",
        )
    finally:
        container.intake.leave()
    if isinstance(result, StoredResponse):
        container.metrics.idempotent_replays.inc()
        return _created(result.body, result.order_id, result.status_code, replayed=True)
    container.metrics.orders_created.inc()
    body = render_order(result.order, result.timeline)
    return _created(body, str(result.order.order_id), 201, replayed=False)


def _created(body: bytes, order_id: str, status_code: int, *, replayed: bool) -> Response[bytes]:
    headers = {"Location": f"/orders/{order_id}", **tracing.response_headers(order_id)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return Response(body, status_code=status_code, media_type=JSON, headers=headers)


def _order_id(raw: str) -> uuid.UUID:
    """A malformed id names no order: 404, like an unknown one (never a 500)."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFoundException(f"no order with id {raw!r}") from None


@get(
    "/orders/{order_id:str}",
    summary="Get an order",
    tags=["orders"],
    responses={
        200: ResponseSpec(data_container=OrderResponse, description="The order"),
        **problem_responses(400, 401, 404, 429, 503),
    },
)
async def get_order(
    request: Request[Any, Any, Any], order_id: Annotated[str, PathParameter()]
) -> Response[bytes]:
    parsed = _order_id(order_id)
    missed = bool(request.scope.get("state", {}).get(MISSED))
    body = await _container(request).orders.get_order(parsed, cache_checked=missed)
    return Response(body, media_type=JSON)


@get(
    "/orders",
    summary="List orders, newest first",
    tags=["orders"],
    responses=problem_responses(400, 401, 422, 429, 503),
)
async def list_orders(
    request: Request[Any, Any, Any],
    customer_id: Annotated[str | None, QueryParameter(max_length=64, required=False)] = None,
    status: Annotated[str | None, QueryParameter(required=False)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
    cursor: Annotated[str | None, QueryParameter(max_length=512, required=False)] = None,
) -> OrderListResponse:
    container = _container(request)
    errors = []
    valid_statuses = {s.value for s in OrderStatus}
    if status is not None and status not in valid_statuses:
        errors.append(
            {"field": "status", "message": f"must be one of {', '.join(sorted(valid_statuses))}"}
        )
    if limit > container.settings.list_max_limit:
        errors.append(
            {"field": "limit", "message": f"must be at most {container.settings.list_max_limit}"}
        )
    if errors:
        raise RequestValidationError(errors)
    page = await container.orders.list_orders(
        customer_id=customer_id, status=status, limit=limit, cursor=cursor
    )
    return OrderListResponse(
        items=[to_response(o) for o in page.orders], next_cursor=page.next_cursor
    )


@post(
    "/orders/{order_id:str}/cancel",
    summary="Cancel an order (a paid one is refunded)",
    tags=["orders"],
    status_code=200,
    responses={
        200: ResponseSpec(data_container=OrderResponse, description="The cancelled order"),
        **problem_responses(401, 404, 409, 429, 503),
    },
)
async def cancel_order(
    request: Request[Any, Any, Any], order_id: Annotated[str, PathParameter()]
) -> Response[bytes]:
    cancelled = await _container(request).lifecycle.cancel(
        _order_id(order_id), correlation_id=request_id_of(request)
    )
    return Response(render_order(cancelled.order, cancelled.timeline), media_type=JSON)
