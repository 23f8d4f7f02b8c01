"""The worker's small HTTP server: metrics, health, and the send audit the load tool reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Annotated

import msgspec
from litestar import Litestar, post
from litestar.middleware import DefineMiddleware
from litestar.params import Body

from common import tracing
from common.hosting import Host
from common.http import (
    HttpMetrics,
    RequestContextMiddleware,
    ServiceUnavailableError,
    exception_handlers,
)
from common.http_auth import api_key_middleware
from common.observability import Metrics
from notification_worker.sent_store import SentStore

__all__ = ["AuditRequest", "AuditResponse", "create_app"]

MAX_AUDIT_ORDERS = 10_000


class AuditRequest(msgspec.Struct, forbid_unknown_fields=True):
    order_ids: Annotated[list[uuid.UUID], msgspec.Meta(max_length=MAX_AUDIT_ORDERS)]


class AuditedOrder(msgspec.Struct):
    order_id: str
    sends: dict[str, int]


class AuditResponse(msgspec.Struct):
    orders: list[AuditedOrder]
    missing: list[str]


def create_app(
    store: SentStore, metrics: Metrics, host: Host, api_keys: Sequence[str] = ()
) -> Litestar:
    """The host's routes (health, metrics) and lifespan (the consumer) plus the send audit."""

    @post("/notifications/audit", status_code=200, tags=["audit"])
    async def audit(data: Annotated[AuditRequest, Body()]) -> AuditResponse:
        """Successful sends per channel for each order's events; a double send shows 2."""
        order_ids = list(dict.fromkeys(str(o) for o in data.order_ids))
        try:
            found = await store.audit(order_ids)
        except Exception as exc:
            raise ServiceUnavailableError(f"send records unavailable: {exc!r}") from exc
        return AuditResponse(
            orders=[AuditedOrder(order_id=o, sends=found[o]) for o in order_ids if o in found],
            missing=[o for o in order_ids if o not in found],
        )

    return Litestar(
        route_handlers=[
            audit,
            *host.routes(metrics),
        ],
        lifespan=[host.lifespan],
        middleware=[
            *tracing.http_middleware(),
            DefineMiddleware(RequestContextMiddleware, metrics=HttpMetrics(metrics)),
            # The audit lists what was sent for whom: with keys set it needs one.
            *api_key_middleware(api_keys, realm="notifications", metrics=metrics),
        ],
        exception_handlers=exception_handlers(),
    )
