"""create_app: the Litestar application with its lifespan (pools, relay) wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin

from common.http import (
    HttpMetrics,
    RequestContextMiddleware,
    exception_handlers,
    health_handlers,
    metrics_handler,
    problem,
)
from common.observability import Metrics, configure_logging
from order_service.api.routes import create_order, get_order, list_orders
from order_service.container import Container
from order_service.settings import OrderSettings
from order_service.unit_of_work import DatabaseUnavailableError

__all__ = ["app_from_env", "create_app"]

SERVICE = "order_service"


def create_app(settings: OrderSettings, *, configure_logs: bool = True) -> Litestar:
    if configure_logs:
        configure_logging("order-service", settings.log_level)
    metrics = Metrics(SERVICE)
    container = Container.build(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.container = container
        await container.start()
        try:
            yield
        finally:
            await container.stop()

    def on_db_unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        container.metrics.db_unavailable.inc()
        return problem(
            503,
            "the order database is unavailable; retry shortly",
            headers={"Retry-After": "1"},
            instance=request.url.path,
        )

    handlers = exception_handlers()
    handlers[DatabaseUnavailableError] = on_db_unavailable

    health = health_handlers(
        {
            "mysql": container.mysql_up,
            "redis": container.redis_up,
            "rabbitmq": container.rabbitmq_up,
        },
        required=frozenset({"mysql"}),
    )
    app = Litestar(
        route_handlers=[create_order, get_order, list_orders, *health, metrics_handler(metrics)],
        lifespan=[lifespan],
        exception_handlers=handlers,
        middleware=[DefineMiddleware(RequestContextMiddleware, metrics=HttpMetrics(metrics))],
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
    return app


def app_from_env() -> Litestar:
    """Factory for uvicorn (also used with several worker processes)."""
    return create_app(OrderSettings.from_env())
