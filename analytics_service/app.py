"""create_app: the analytics API (Litestar) with its pools wired in one place."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response
from litestar.middleware import DefineMiddleware

from analytics_service.api.routes import (
    ApiLimits,
    audit,
    revenue,
    summary,
    top_customers,
    top_products,
)
from analytics_service.bootstrap import Adapters
from analytics_service.metrics import SERVICE, ApiMetrics
from analytics_service.ports import StoreConflictError, StoreUnavailableError
from analytics_service.services import AnalyticsQueries
from analytics_service.settings import AnalyticsSettings
from common import tracing
from common.hosting import Host, PoolsOnly
from common.http import (
    HttpMetrics,
    RequestContextMiddleware,
    exception_handlers,
    problem,
)
from common.http_auth import api_key_middleware
from common.observability import Metrics, configure_logging
from common.openapi_page import offline_openapi_config
from common.tracing import configure_tracing

__all__ = ["app_from_env", "create_app"]

# 10000 order ids of ~40 bytes each, with room to spare.
MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: AnalyticsSettings, *, configure_logs: bool = True) -> Litestar:
    if configure_logs:
        configure_logging("analytics-api", settings.log_level)
        configure_tracing("analytics-api")
    metrics = Metrics(SERVICE)
    api_metrics = ApiMetrics(metrics)
    adapters = Adapters.build(settings, cache_requests=api_metrics.cache_requests)
    queries = AnalyticsQueries(adapters.reader, adapters.cache)

    def on_db_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        api_metrics.db_unavailable.inc()
        return problem(
            503,
            "the analytics database is unavailable; retry shortly",
            headers={"Retry-After": "1"},
            instance=request.url.path,
        )

    handlers = exception_handlers()
    handlers[StoreUnavailableError] = on_db_unavailable
    handlers[StoreConflictError] = on_db_unavailable

    host = Host(
        "analytics-api",
        PoolsOnly(adapters.close),
        supervisors=(),
        checks={"mysql": adapters.mysql_up, "redis": adapters.redis_up},
        required={"mysql"},
    )
    app = Litestar(
        route_handlers=[
            summary,
            revenue,
            top_products,
            top_customers,
            audit,
            *host.routes(metrics),
        ],
        lifespan=[host.lifespan],
        exception_handlers=handlers,
        middleware=[
            *tracing.http_middleware(),
            DefineMiddleware(RequestContextMiddleware, metrics=HttpMetrics(metrics)),
            *api_key_middleware(settings.api_keys, realm="analytics", metrics=metrics),
        ],
        request_max_body_size=MAX_BODY_BYTES,
        openapi_config=offline_openapi_config("Analytics service"),
        debug=False,
    )
    app.state.queries = queries
    app.state.adapters = adapters
    app.state.host = host
    app.state.limits = ApiLimits(
        settings.max_buckets, settings.top_max_limit, settings.audit_max_ids
    )
    return app


def app_from_env() -> Litestar:
    """Factory for uvicorn."""
    return create_app(AnalyticsSettings.from_env())
