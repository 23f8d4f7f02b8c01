"""OpenTelemetry for every process, configured once at start from the standard OTEL_* variables.

``OTEL_TRACES_EXPORTER=none`` (the default) installs nothing: no provider, no span processor,
no instrumentation; every hook below then costs one ``None`` check and events get a fresh
``traceparent`` as before. With ``otlp`` or ``console`` the SDK records the HTTP requests, the
database transactions, Redis, the relay's publishes and each consumer's handling, and the trace
context of the request that caused an event travels with its outbox row and its AMQP headers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from common.settings import Env, SettingsError

__all__ = [
    "NO_SPAN",
    "SpanKind",
    "TracingSettings",
    "batch",
    "batch_spans",
    "configure_tracing",
    "enabled",
    "extract",
    "http_middleware",
    "install",
    "instrument_engine",
    "new_traceparent",
    "parents",
    "provider",
    "response_headers",
    "span",
    "trace_headers",
    "tracer",
]

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)

_PROPAGATOR = TraceContextTextMapPropagator()
# None while tracing is off: the one thing every hook looks at.
_tracer: Tracer | None = None
_provider: trace.TracerProvider | None = None
# The span context of each event (and of its order) handled in the current batch, so that work
# done for many events at once (the saga's charges, the events it emits, the notification
# sends) is attributed to the trace of the event it is for.
_parents: ContextVar[Mapping[str, Context] | None] = ContextVar("orderflow_parents", default=None)
# Shared and reusable: what every span hook returns while tracing is off.
NO_SPAN = contextlib.nullcontext()


@dataclass(frozen=True)
class TracingSettings:
    exporter: str = "none"
    protocol: str = "http/protobuf"
    endpoint: str = "http://localhost:4318"
    service_name: str = "orderflow"
    sampler: str = "parentbased_always_on"
    sampler_arg: float = 1.0

    @classmethod
    def from_env(cls, default_service: str, env: Env | None = None) -> TracingSettings:
        env = env or Env()
        sdk_disabled = env.flag("OTEL_SDK_DISABLED", False)
        protocol = env.choice("OTEL_EXPORTER_OTLP_PROTOCOL", PROTOCOLS, cls.protocol)
        endpoint = env.text(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://localhost:4317" if protocol == "grpc" else cls.endpoint,
        )
        if not endpoint.startswith(("http://", "https://")):
            raise SettingsError(f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r} must be an http(s) URL")
        sampler_arg = env.number("OTEL_TRACES_SAMPLER_ARG", cls.sampler_arg, min_value=0.0)
        if sampler_arg > 1.0:
            raise SettingsError(f"OTEL_TRACES_SAMPLER_ARG={sampler_arg} must be <= 1")
        return cls(
            exporter="none"
            if sdk_disabled
            else env.choice("OTEL_TRACES_EXPORTER", EXPORTERS, cls.exporter),
            protocol=protocol,
            endpoint=endpoint,
            service_name=env.text("OTEL_SERVICE_NAME", default_service),
            sampler=env.choice("OTEL_TRACES_SAMPLER", SAMPLERS, cls.sampler),
            sampler_arg=sampler_arg,
        )


def configure_tracing(default_service: str, env: Env | None = None) -> TracingSettings:
    """Read the OTEL_* settings and, unless the exporter is ``none``, install the SDK for this
    process. Call once at process start, after the logging set-up (raises SettingsError)."""
    settings = TracingSettings.from_env(default_service, env)
    if settings.exporter == "none" or _tracer is not None:
        return settings
    from common.tracing_setup import build_provider, instrument_libraries

    provider = build_provider(settings)
    trace.set_tracer_provider(provider)
    install(provider)
    instrument_libraries(provider)
    return settings


def install(provider: trace.TracerProvider | None) -> None:
    """Start (or with None, stop) recording through this provider: the process set-up and the
    tests' in-memory exporter both come through here."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("orderflow")


def http_middleware() -> list[Any]:
    """The HTTP server span middleware for a Litestar app, first in its list ([] when off)."""
    if _tracer is None:
        return []
    from common.tracing_setup import http_middleware as middleware

    return middleware()


def instrument_engine(engine: Any) -> None:
    """One span per database transaction of this SQLAlchemy engine (nothing when off)."""
    if _tracer is not None:
        from common.tracing_setup import instrument_engine as instrument

        instrument(engine)


def enabled() -> bool:
    return _tracer is not None


def tracer() -> Tracer:
    assert _tracer is not None, "tracing is off"
    return _tracer


def provider() -> trace.TracerProvider:
    assert _provider is not None, "tracing is off"
    return _provider


def new_traceparent() -> str:
    """A fresh W3C traceparent (version 00, sampled): what an event carries with tracing off.
    One urandom read for both ids (two token_hex calls cost twice the system calls)."""
    ids = os.urandom(24).hex()
    return f"00-{ids[:32]}-{ids[32:]}-01"


def extract(headers: Mapping[str, Any] | None) -> Context:
    """The remote parent a message's headers name (an empty context when there is none)."""
    carrier = {k: v for k, v in (headers or {}).items() if k in ("traceparent", "tracestate")}
    return _PROPAGATOR.extract({k: str(v) for k, v in carrier.items()})


def inject(carrier: MutableMapping[str, Any], context: Context | None) -> None:
    _PROPAGATOR.inject(carrier, context=context)


def _parent(key: object) -> Context | None:
    """The context of the event or order being handled in this batch, else the current one."""
    known = _parents.get()
    if known is not None and key is not None:
        return known.get(str(key))
    return None


def trace_headers(key: object = None) -> dict[str, str]:
    """The trace headers of an event about to be stored in the outbox: the context of the work
    that causes it (the request, or the consumed event the key names), or a fresh one."""
    if _tracer is None:
        return {"traceparent": new_traceparent()}
    carrier: dict[str, str] = {}
    inject(carrier, _parent(key))
    return carrier if "traceparent" in carrier else {"traceparent": new_traceparent()}


def response_headers(order_id: object) -> dict[str, str]:
    """Tag the current (request) span with the order and name its trace to the client in a
    W3C ``traceresponse`` header, so a trace is found by order id or from the response."""
    if _tracer is None:
        return {}
    current = trace.get_current_span()
    context = current.get_span_context()
    if not context.is_valid:
        return {}
    current.set_attribute("order.id", str(order_id))
    flags = format(int(context.trace_flags), "02x")
    return {"traceresponse": f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags}"}


def span(
    name: str,
    *,
    key: object = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Any]:
    """A current span under the event or order ``key`` names in this batch (or the current
    span); a shared no-op context manager while tracing is off."""
    if _tracer is None:
        return NO_SPAN
    return _tracer.start_as_current_span(
        name, context=_parent(key), kind=kind, attributes=dict(attributes or {})
    )


@contextlib.contextmanager
def parents(contexts: Mapping[str, Context]) -> Iterator[None]:
    """Name the context of each event or order (by id) for the work done inside."""
    token = _parents.set(contexts)
    try:
        yield
    finally:
        _parents.reset(token)


def batch(
    name: str, carriers: Iterable[Mapping[str, Any] | None], **options: Any
) -> contextlib.AbstractContextManager[Any]:
    """``batch_spans`` for work done once for many items, a no-op while tracing is off (the
    carriers, an iterable, are then never read)."""
    if _tracer is None:
        return NO_SPAN
    return batch_spans(name, list(carriers), **options)


@contextlib.contextmanager
def batch_spans(
    name: str,
    carriers: Sequence[Mapping[str, Any] | None],
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    item_attributes: Sequence[Mapping[str, Any]] | None = None,
    size_attribute: str = "batch.size",
) -> Iterator[list[Span]]:
    """Work done once for many traced items (a group commit, a consumer batch): one span in
    each item's own trace, so every order's trace shows it, plus, for more than one item, a
    batch span linked to every item that is current meanwhile (what runs inside, the SQL and
    Redis spans, belongs to it). A single item's span is itself the current one."""
    assert _tracer is not None
    common = dict(attributes or {})
    items = [
        _tracer.start_span(
            name,
            context=extract(carrier),
            kind=kind,
            attributes={**common, **(item_attributes[i] if item_attributes else {})},
        )
        for i, carrier in enumerate(carriers)
    ]
    if len(items) == 1:
        current = items[0]
    else:
        current = _tracer.start_span(
            name,
            kind=kind,
            attributes={**common, size_attribute: len(items)},
            links=[Link(s.get_span_context()) for s in items],
        )
        for item in items:
            item.add_link(current.get_span_context())
    try:
        with trace.use_span(current, end_on_exit=False, record_exception=True):
            yield items
    except BaseException as exc:
        for s in items:
            s.record_exception(exc)
            s.set_status(trace.StatusCode.ERROR, type(exc).__name__)
        raise
    finally:
        for s in items:
            s.end()
        if current not in items:
            current.end()
