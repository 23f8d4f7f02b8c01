"""/analytics endpoints: parse and validate, call one query, map the result."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, QueryParameter

from analytics_service.aggregation import InvalidRangeError, plan_buckets
from analytics_service.api.schemas import AuditRequest, validate_audit_body
from analytics_service.read_models import (
    AuditResponse,
    RevenueResponse,
    SummaryResponse,
    TopCustomersResponse,
    TopProductsResponse,
)
from analytics_service.services import AnalyticsQueries
from common.http import FieldError, RequestValidationError, problem_responses

__all__ = ["ApiLimits", "audit", "revenue", "summary", "top_customers", "top_products"]

JSON = "application/json"
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
DEFAULT_TOP_LIMIT = 10


@dataclass(frozen=True)
class ApiLimits:
    max_buckets: int
    top_max_limit: int
    audit_max_ids: int


def _queries(request: Request[Any, Any, Any]) -> AnalyticsQueries:
    queries: AnalyticsQueries = request.app.state.queries
    return queries


def _limits(request: Request[Any, Any, Any]) -> ApiLimits:
    limits: ApiLimits = request.app.state.limits
    return limits


def _currency(value: str | None, errors: list[FieldError]) -> str | None:
    if value is not None and not _CURRENCY_RE.match(value):
        errors.append({"field": "currency", "message": "must be three upper-case letters"})
        return None
    return value


def _time(name: str, value: str | None, errors: list[FieldError]) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        errors.append({"field": name, "message": "must be an RFC 3339 date-time"})
        return None
    if parsed.tzinfo is None:
        errors.append({"field": name, "message": "must include a UTC offset (e.g. Z)"})
        return None
    return parsed


def _limit(value: str | None, maximum: int, errors: list[FieldError]) -> int:
    if value is None:
        return min(DEFAULT_TOP_LIMIT, maximum)
    try:
        limit = int(value)
    except ValueError:
        errors.append({"field": "limit", "message": "must be an integer"})
        return 0
    if not 1 <= limit <= maximum:
        errors.append({"field": "limit", "message": f"must be between 1 and {maximum}"})
    return limit


@get(
    "/analytics/summary",
    summary="Total orders, revenue and average order value per currency",
    description="Cached in Redis; reflects an applied event within the summary TTL "
    "(ANALYTICS_SUMMARY_TTL_SECONDS, 2 s by default), usually at once. While the database is "
    "down the last known summary is served with `X-Cache: stale`.",
    responses={
        200: ResponseSpec(data_container=SummaryResponse, description="The summary"),
        **problem_responses(503),
    },
    tags=["analytics"],
)
async def summary(request: Request[Any, Any, Any]) -> Response[bytes]:
    result = await _queries(request).summary()
    return Response(result.body, media_type=JSON, headers={"X-Cache": result.cache})


@get(
    "/analytics/revenue",
    summary="Revenue and order count per UTC hour or day bucket",
    description="`from` is rounded down and `to` up to whole buckets; `to` is exclusive. "
    "Defaults: the last 24 hours (hour) or 30 days (day).",
    responses=problem_responses(400, 422, 503),
    tags=["analytics"],
)
async def revenue(
    request: Request[Any, Any, Any],
    start: Annotated[
        str | None, QueryParameter(name="from", required=False, description="RFC 3339, inclusive")
    ] = None,
    end: Annotated[
        str | None, QueryParameter(name="to", required=False, description="RFC 3339, exclusive")
    ] = None,
    granularity: Annotated[str, QueryParameter(description="hour or day")] = "hour",
    currency: Annotated[str | None, QueryParameter(required=False)] = None,
) -> RevenueResponse:
    errors: list[FieldError] = []
    start_at = _time("from", start, errors)
    end_at = _time("to", end, errors)
    wanted = _currency(currency, errors)
    if errors:
        raise RequestValidationError(errors)
    try:
        plan = plan_buckets(
            start_at,
            end_at,
            granularity,
            now=datetime.now(UTC),
            max_buckets=_limits(request).max_buckets,
        )
    except InvalidRangeError as exc:
        raise RequestValidationError([{"field": exc.field, "message": exc.message}]) from exc
    return await _queries(request).revenue(plan, wanted)


def _top_params(
    request: Request[Any, Any, Any], limit: str | None, currency: str | None
) -> tuple[int, str | None]:
    """The validated ``limit`` and ``currency`` of a top list, or a 422 naming each bad one."""
    errors: list[FieldError] = []
    n = _limit(limit, _limits(request).top_max_limit, errors)
    wanted = _currency(currency, errors)
    if errors:
        raise RequestValidationError(errors)
    return n, wanted


@get(
    "/analytics/top-products",
    summary="Products ranked by revenue",
    responses=problem_responses(400, 422, 503),
    tags=["analytics"],
)
async def top_products(
    request: Request[Any, Any, Any],
    limit: Annotated[
        str | None,
        QueryParameter(required=False, description="1 to the maximum (100 by default); default 10"),
    ] = None,
    currency: Annotated[str | None, QueryParameter(required=False)] = None,
) -> TopProductsResponse:
    n, wanted = _top_params(request, limit, currency)
    return await _queries(request).top_products(n, wanted)


@get(
    "/analytics/top-customers",
    summary="Customers ranked by revenue",
    responses=problem_responses(400, 422, 503),
    tags=["analytics"],
)
async def top_customers(
    request: Request[Any, Any, Any],
    limit: Annotated[
        str | None,
        QueryParameter(required=False, description="1 to the maximum (100 by default); default 10"),
    ] = None,
    currency: Annotated[str | None, QueryParameter(required=False)] = None,
) -> TopCustomersResponse:
    n, wanted = _top_params(request, limit, currency)
    return await _queries(request).top_customers(n, wanted)


@post(
    "/analytics/audit",
    summary="Which orders analytics has applied, with their amounts and times",
    description="For the load tool: up to 10000 order ids per request (422 beyond).",
    status_code=200,
    opt={"body_validator": validate_audit_body},
    responses=problem_responses(400, 413, 422, 503),
    tags=["analytics"],
)
async def audit(request: Request[Any, Any, Any], data: JSONBody[AuditRequest]) -> AuditResponse:
    maximum = _limits(request).audit_max_ids
    if len(data.order_ids) > maximum:
        raise RequestValidationError(
            [{"field": "order_ids", "message": f"at most {maximum} ids per request"}]
        )
    return await _queries(request).audit(data.order_ids)
