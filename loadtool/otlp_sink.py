"""A discarding OTLP/HTTP endpoint for ``loadtool.bench --otel otlp``: the processes pay the
real cost of exporting (encoding, HTTP posts) without a trace backend to install. It reads each
request, counts it and answers 200 with an empty protobuf body."""

from __future__ import annotations

from loadtool.http_receiver import HttpReceiver, Reply

__all__ = ["OtlpSink"]


class OtlpSink(HttpReceiver):
    """``async with OtlpSink() as sink:`` - point OTEL_EXPORTER_OTLP_ENDPOINT at ``sink.url``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.requests = 0
        self.bytes = 0

    @property
    def url(self) -> str:
        return self.base_url

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        self.requests += 1
        self.bytes += len(body)
        return b"200 OK", b"application/x-protobuf", b""
