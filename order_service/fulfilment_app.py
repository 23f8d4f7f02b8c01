"""``python -m order_service fulfilment``: the fulfilment saga and the order scheduler in a
process of their own, with the relay of what they commit; health and metrics only over HTTP.

The API process then leaves them out (``ORDER_FULFILMENT_IN_API=false``): the saga's batches and
the relay of its events no longer share the request path's event loop. Not what ``make run``
does: on its two shared cores this gave no steady gain (docs/benchmark.md)."""

from __future__ import annotations

from litestar import Litestar

from common.observability import Metrics, configure_logging
from common.tracing import configure_tracing
from order_service.container import Container, Role
from order_service.process_host import order_host
from order_service.settings import OrderSettings

__all__ = ["app_from_env", "create_fulfilment_app"]

SERVICE = "order_service"
PROCESS = "order-fulfilment"


def create_fulfilment_app(settings: OrderSettings, *, configure_logs: bool = True) -> Litestar:
    """Consumes in the app's lifespan, drains and acks on SIGTERM; ready only while MySQL and
    the broker answer and every consumer consumes (its job is consuming, unlike the API's)."""
    if configure_logs:
        configure_logging(PROCESS, settings.log_level)
        configure_tracing(PROCESS)
    metrics = Metrics(SERVICE)
    container = Container.build(settings, metrics, role=Role.FULFILMENT)
    host = order_host(PROCESS, container)
    app = host.app(metrics)
    app.state.container = container
    return app


def app_from_env() -> Litestar:
    """Factory for uvicorn."""
    return create_fulfilment_app(OrderSettings.from_env())
