"""create_app: the Litestar application, hosted by the common host (consumers, relay, pools)."""

from __future__ import annotations

from litestar import Litestar
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from common import tracing
from common.asyncapi import asyncapi_handler, build_asyncapi
from common.http import (
    HttpMetrics,
    RequestContextMiddleware,
    exception_handlers,
)
from common.http_auth import ApiKeyAuthMiddleware
from common.http_limits import RateLimitMiddleware, RequestTimeoutMiddleware
from common.observability import Metrics, configure_logging
from common.tracing import configure_tracing
from order_service.api.cached_reads import CachedOrderReads
from order_service.api.problems import order_problem_handlers
from order_service.api.routes import cancel_order, create_order, get_order, list_orders
from order_service.container import Container
from order_service.process_host import order_host
from order_service.settings import OrderSettings

__all__ = ["app_from_env", "create_app"]

SERVICE = "order_service"


def create_app(settings: OrderSettings, *, configure_logs: bool = True) -> Litestar:
    if configure_logs:
        configure_logging("order-service", settings.log_level)
        configure_tracing("order-service")
    metrics = Metrics(SERVICE)
    container = Container.build(settings, metrics)

    handlers = {**exception_handlers(), **order_problem_handlers()}

    # The common host (issue 14): the consumers, the relay and the writer start in the app's
    # lifespan (each uvicorn worker process runs its own) and drain on SIGTERM; readiness names
    # every supervised task (rule 9).
    host = order_host("order-service", container)
    http_metrics = HttpMetrics(metrics)
    # A cache hit is answered before the request is built, unless every request must first
    # pass the API-key or rate-limit layers.
    cached_reads = (
        []
        if settings.api_keys or settings.rate_limit_per_second > 0
        else [DefineMiddleware(CachedOrderReads, cache=container.cache, metrics=http_metrics)]
    )
    app = Litestar(
        route_handlers=[
            create_order,
            get_order,
            list_orders,
            cancel_order,
            *host.routes(metrics),
            asyncapi_handler(build_asyncapi(settings.topology.topology())),
        ],
        lifespan=[host.lifespan],
        exception_handlers=handlers,
        middleware=[
            *tracing.http_middleware(),
            *cached_reads,
            DefineMiddleware(RequestContextMiddleware, metrics=http_metrics),
            *hardening_middleware(settings, metrics),
        ],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Order service",
            version="1.0.0",
            path="/schema",
            # Scalar's page loads assets from a CDN; the JSON/YAML schema itself works offline.
            render_plugins=[ScalarRenderPlugin()],
        ),
        debug=False,
    )
    app.state.container = container
    app.state.host = host
    return app


def hardening_middleware(settings: OrderSettings, metrics: Metrics) -> list[DefineMiddleware]:
    """Rate limit, then auth (every request but health and metrics), then the time limit
    (docs/security.md); each off when unset."""
    rejected = metrics.counter(
        "http_rejected_total",
        "Requests refused before the handler: rate_limited, unauthorized, timeout",
        ("reason",),
    )
    for reason in ("rate_limited", "unauthorized", "timeout"):
        rejected.labels(reason)
    layers = []
    if settings.rate_limit_per_second > 0:
        layers.append(
            DefineMiddleware(
                RateLimitMiddleware,
                rate=settings.rate_limit_per_second,
                burst=settings.rate_limit_burst or None,
                on_limited=lambda _: rejected.labels("rate_limited").inc(),
            )
        )
    if settings.api_keys:
        layers.append(
            DefineMiddleware(
                ApiKeyAuthMiddleware,
                keys=settings.api_keys,
                realm="orders",
                on_rejected=lambda _: rejected.labels("unauthorized").inc(),
            )
        )
    if settings.request_timeout_seconds > 0:
        layers.append(
            DefineMiddleware(
                RequestTimeoutMiddleware,
                timeout=settings.request_timeout_seconds,
                on_timeout=lambda _: rejected.labels("timeout").inc(),
            )
        )
    return layers


def app_from_env() -> Litestar:
    """Factory for uvicorn (also used with several worker processes)."""
    return create_app(OrderSettings.from_env())
