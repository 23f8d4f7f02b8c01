"""An OTLP/HTTP trace receiver of the test's own: decodes every ``POST /v1/traces``
(protobuf, gzip or not) into flat spans, so a test asserts what the processes exported.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from loadtool.http_receiver import HttpReceiver, Reply

__all__ = ["OtlpReceiver", "ReceivedSpan"]

# opentelemetry.proto.trace.v1.Span.SpanKind
KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    linked_traces: tuple[str, ...] = ()


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=str(resource.get("service.name", "")),
                        name=span.name,
                        kind=KINDS.get(span.kind, "unspecified"),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        linked_traces=tuple(link.trace_id.hex() for link in span.links),
                    )
                )
    return spans


class OtlpReceiver(HttpReceiver):
    """``async with OtlpReceiver() as otlp:`` - point OTEL_EXPORTER_OTLP_ENDPOINT at
    ``otlp.url``; ``await otlp.wait_for(predicate, timeout)`` returns the spans once the
    predicate holds on all of them."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return self.base_url

    async def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float
    ) -> list[ReceivedSpan]:
        async with asyncio.timeout(timeout):
            while not predicate(self.spans):
                self._changed.clear()
                await self._changed.wait()
        return self.spans

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        answer = ExportTraceServiceResponse().SerializeToString()
        if path != "/v1/traces":
            return b"404 Not Found", b"application/x-protobuf", answer
        self.spans.extend(decode(body))
        self.requests += 1
        self._changed.set()
        return b"200 OK", b"application/x-protobuf", answer
