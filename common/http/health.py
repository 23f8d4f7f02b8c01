"""/health/live, /health/ready and /metrics, served the same way by every process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from common.observability import Metrics

__all__ = ["Check", "health_handlers", "metrics_handler"]

Check = Callable[[], Awaitable[bool]]


def health_handlers(
    checks: Mapping[str, Check], required: frozenset[str], timeout: float = 1.0
) -> list[HTTPRouteHandler]:
    """/health/live (the process answers) and /health/ready (each dependency reported; 503 when
    a required one is down, 200 with ``degraded`` when only an optional one is)."""

    @get("/health/live", include_in_schema=True, sync_to_thread=False, tags=["health"])
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/health/ready", include_in_schema=True, tags=["health"])
    async def ready() -> Response[dict[str, Any]]:
        async def run(check: Check) -> bool:
            try:
                return await asyncio.wait_for(check(), timeout)
            except Exception:
                return False

        names = list(checks)
        results = await asyncio.gather(*(run(checks[n]) for n in names))
        report = {n: ("up" if ok else "down") for n, ok in zip(names, results, strict=True)}
        required_down = [n for n in names if n in required and report[n] == "down"]
        any_down = any(v == "down" for v in report.values())
        status = "down" if required_down else ("degraded" if any_down else "ok")
        return Response(
            {"status": status, "checks": report},
            status_code=503 if required_down else 200,
        )

    return [live, ready]


def metrics_handler(metrics: Metrics) -> HTTPRouteHandler:
    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def metrics_endpoint() -> Response[bytes]:
        return Response(
            generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST, status_code=200
        )

    return metrics_endpoint
