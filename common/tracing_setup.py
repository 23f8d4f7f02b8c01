"""What ``configure_tracing`` installs when an exporter is set: the SDK provider, the maintained
instrumentations, the trace id in every log line, and one span per database transaction.

Imported only with tracing on, so a process with ``OTEL_TRACES_EXPORTER=none`` loads none of it.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import structlog
from litestar.middleware import DefineMiddleware
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from common import tracing
from common.settings import SettingsError

__all__ = ["build_provider", "http_middleware", "instrument_engine", "instrument_libraries"]

# Prometheus scrapes and probes: every few seconds, and nobody's request.
UNTRACED_PATHS = ["/health", "/metrics", "/schema"]
_SPAN_KEY = "orderflow_tx_span"


def _sampler(name: str, arg: float) -> sampling.Sampler:
    base_name = name.removeprefix("parentbased_")
    base: sampling.Sampler
    if base_name == "always_on":
        base = sampling.ALWAYS_ON
    elif base_name == "always_off":
        base = sampling.ALWAYS_OFF
    else:
        base = sampling.TraceIdRatioBased(arg)
    return sampling.ParentBased(base) if name.startswith("parentbased_") else base


def _exporter(settings: tracing.TracingSettings) -> SpanExporter:
    if settings.exporter == "console":
        return ConsoleSpanExporter()
    if settings.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as exc:
            raise SettingsError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the opentelemetry-exporter-otlp-proto-grpc "
                "package; use http/protobuf (the default)"
            ) from exc
        grpc: SpanExporter = GrpcExporter(endpoint=settings.endpoint)
        return grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The generic endpoint names the collector; the HTTP exporter wants the signal's path.
    return OTLPSpanExporter(endpoint=settings.endpoint.rstrip("/") + "/v1/traces")


def build_provider(
    settings: tracing.TracingSettings, processor: SpanProcessor | None = None
) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=_sampler(settings.sampler, settings.sampler_arg),
    )
    provider.add_span_processor(processor or BatchSpanProcessor(_exporter(settings)))
    return provider


def _add_trace_id(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
    return event_dict


def instrument_libraries(provider: TracerProvider) -> None:
    """Redis commands (the maintained instrumentation) and the trace id in every log line."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    processors = list(structlog.get_config()["processors"])
    if _add_trace_id not in processors:
        structlog.configure(processors=[_add_trace_id, *processors])


def _method_only(scope: Any) -> tuple[str, dict[str, str]]:
    """The span's name before routing: Litestar's default, the raw path, would make a new span
    name for every order id (``_NameByRoute`` renames it once the route is known)."""
    return str(scope.get("method", "HTTP")), {}


class _NameByRoute:
    """After routing: the request's span is named by its route template
    (``GET /orders/{order_id}``), the cached-read fast path included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        route = scope.get("path_template")
        span = trace.get_current_span()
        if route and span.is_recording():
            span.update_name(f"{scope.get('method', '')} {route}")
            span.set_attribute("http.route", route)
        await self.app(scope, receive, send)


def http_middleware() -> list[DefineMiddleware]:
    """The maintained ASGI instrumentation (Litestar moves it around the whole app, so a request
    that is not routed is traced too), then the naming by route; put first in the app's list,
    they cover the cached-read fast path as well."""
    from litestar.plugins.opentelemetry import OpenTelemetryConfig

    config = OpenTelemetryConfig(
        tracer_provider=tracing.provider(),
        exclude=UNTRACED_PATHS,
        scope_span_details_extractor=_method_only,
        # One span per request: the per-message receive/send spans double the cost for nothing.
        exclude_spans=["receive", "send"],
    )
    return [config.middleware, DefineMiddleware(_NameByRoute)]


def instrument_engine(engine: AsyncEngine) -> None:
    """One CLIENT span per transaction (BEGIN to COMMIT or ROLLBACK) with its statement count.
    Per-statement spans (the maintained SQLAlchemy instrumentation) cost several spans per
    request on the hot paths; a transaction is the unit that commits and that operators wait
    on. Paths that write with raw multi-statement packets (group commit) have their own span."""
    url = engine.url
    attributes: dict[str, Any] = {
        "db.system.name": "mysql",
        "db.namespace": url.database or "",
        "server.address": url.host or "",
        "server.port": url.port or 3306,
    }
    name = f"transaction {url.database or 'mysql'}"

    def begin(conn: Any) -> None:
        stale = conn.info.pop(_SPAN_KEY, None)
        if stale is not None:
            stale[0].end()
        span = tracing.tracer().start_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes)
        conn.info[_SPAN_KEY] = [span, 0]

    def statement(conn: Any, *_: Any) -> None:
        held = conn.info.get(_SPAN_KEY)
        if held is not None:
            held[1] += 1

    def finish(outcome: str) -> Any:
        def end(conn: Any) -> None:
            held = conn.info.pop(_SPAN_KEY, None)
            if held is None:
                return
            span, count = held
            span.set_attribute("db.transaction.outcome", outcome)
            span.set_attribute("db.statement_count", count)
            span.end()

        return end

    sync = engine.sync_engine
    event.listen(sync, "begin", begin)
    event.listen(sync, "before_cursor_execute", statement)
    event.listen(sync, "commit", finish("commit"))
    event.listen(sync, "rollback", finish("rollback"))
