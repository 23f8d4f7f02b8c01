"""structlog JSON logging and a per-process Prometheus registry with service-prefixed names."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import msgspec
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = [
    "LATENCY_BUCKETS",
    "Metrics",
    "bind_context",
    "configure_logging",
    "get_logger",
    "scrub_credentials",
]

# Seconds; dense below 100 ms where the API and consumers live, sparse above.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_SECRET_KEYS = {"password", "passwd", "secret", "token", "authorization", "api_key", "dsn", "url"}


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "***"
    return event_dict


# user:password@ in any URL-like text (DSNs, AMQP/Redis URLs inside error messages and
# tracebacks): the password is replaced, the rest stays readable for debugging.
_URL_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):([^@\s'\"/]+)@")


def scrub_credentials(text: str) -> str:
    return _URL_CREDENTIALS.sub(r"\1:***@", text)


def _scrub_values(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str) and "@" in value:
            event_dict[key] = scrub_credentials(value)
    return event_dict


_json = msgspec.json.Encoder(enc_hook=str)


def _render_json(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> bytes:
    return _json.encode(event_dict)


def _render_json_text(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> str:
    return _json.encode(event_dict).decode()


class _ScrubbingFormatter(logging.Formatter):
    """Standard-library records (uvicorn, aio-pika, SQLAlchemy) get the same scrubbing."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_credentials(super().format(record))


def configure_logging(service: str, level: str = "info") -> None:
    """One JSON object per line on stdout, with the service name and any bound context."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=numeric, force=True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_ScrubbingFormatter("%(message)s"))
    # Library loggers speak through the same handler; keep their chatter at warning.
    for noisy in ("aio_pika", "aiormq", "uvicorn.access", "alembic"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    binary = getattr(sys.stdout, "buffer", None)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            _scrub_values,
            _render_json if binary is not None else _render_json_text,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        # Bytes straight to the stdout buffer: msgspec encodes a line several times faster
        # than json.dumps, and per-event INFO lines are on every consumer's hot path. A stdout
        # without a byte buffer (a test's StringIO) gets text.
        logger_factory=(
            structlog.BytesLoggerFactory(file=binary)
            if binary is not None
            else structlog.PrintLoggerFactory(file=sys.stdout)
        ),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)


def bind_context(**values: Any) -> Any:
    """Bind values (correlation_id, event_id ...) to every log line of the current task."""
    return structlog.contextvars.bound_contextvars(**values)


class Metrics:
    """Creates metrics named ``<prefix>_<thing>_<unit>`` in a registry owned by one app instance.

    A registry per instance lets tests build several apps in one process without clashes.
    """

    def __init__(self, prefix: str, registry: CollectorRegistry | None = None) -> None:
        self.prefix = prefix
        self.registry = registry or CollectorRegistry()

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(f"{self.prefix}_{name}", doc, labels, registry=self.registry)

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(f"{self.prefix}_{name}", doc, labels, registry=self.registry)

    def histogram(
        self,
        name: str,
        doc: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Histogram:
        return Histogram(
            f"{self.prefix}_{name}", doc, labels, registry=self.registry, buckets=buckets
        )
