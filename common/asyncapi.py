"""The AsyncAPI 3.0 document of the broker, generated from the event contract and the topology.

Channels are the exchange's routing keys (what is published) and the consuming queues (what each
service receives); one message per event type and version, its payload the envelope with that
event's msgspec JSON Schema as ``data``. ``python -m common.asyncapi [PATH]`` writes it
(``make asyncapi`` -> docs/asyncapi.json); the order service serves it at /schema/asyncapi.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler

from common.events import EVENT_TYPES, Envelope, EventData
from common.messaging.topology import Topology, TopologySettings

__all__ = [
    "AMQP_BINDING_VERSION",
    "ASYNCAPI_PATH",
    "ASYNCAPI_VERSION",
    "asyncapi_handler",
    "build_asyncapi",
    "message_key",
    "render",
    "schema_ref",
    "topic_matches",
]

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
ASYNCAPI_PATH = "/schema/asyncapi.json"
# The vhost of `make run` and docker-compose (deploy/rabbitmq/definitions.json).
DEFAULT_VHOST = "orderflow"
_SCHEMA_REF = "#/components/schemas/{name}"

# DESIGN.md §2: AMQP headers of every event (the other properties mirror the envelope).
_HEADERS_SCHEMA: dict[str, Any] = {
    "title": "AmqpHeaders",
    "description": "AMQP headers of every event; message_id = event_id, type = event_type, "
    "content_type application/json, persistent delivery and a timestamp are AMQP properties.",
    "type": "object",
    "properties": {
        "correlation_id": {
            "type": "string",
            "description": "The X-Request-ID of the request that caused the event.",
        },
        "traceparent": {
            "type": "string",
            "description": "W3C trace context.",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        },
    },
    "required": ["correlation_id", "traceparent"],
}


def message_key(cls: type[EventData]) -> str:
    """'OrderCreated.v1': one message per event type and version."""
    return f"{cls.event_type}.v{cls.event_version}"


def schema_ref(name: str) -> str:
    return _SCHEMA_REF.format(name=name)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic binding: ``*`` is one word, ``#`` zero or more words."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), routing_key.split("."))


def _payload(cls: type[EventData]) -> dict[str, Any]:
    return {
        "allOf": [{"$ref": schema_ref(Envelope.__name__)}],
        "properties": {
            "event_type": {"const": cls.event_type},
            "event_version": {"const": cls.event_version},
            "data": {"$ref": schema_ref(cls.__name__)},
        },
    }


def _message(cls: type[EventData]) -> dict[str, Any]:
    return {
        "name": cls.event_type,
        "title": f"{cls.event_type} v{cls.event_version}",
        "summary": f"{cls.event_type}, version {cls.event_version}, routing key {cls.routing_key}.",
        "contentType": "application/json",
        "correlationId": {"location": "$message.header#/correlation_id"},
        "headers": {"$ref": schema_ref("AmqpHeaders")},
        "payload": _payload(cls),
        "bindings": {
            "amqp": {"messageType": cls.event_type, "bindingVersion": AMQP_BINDING_VERSION}
        },
        "x-event-type": cls.event_type,
        "x-event-version": cls.event_version,
        "x-routing-key": cls.routing_key,
    }


def _message_refs(classes: list[type[EventData]]) -> dict[str, Any]:
    return {message_key(c): {"$ref": f"#/components/messages/{message_key(c)}"} for c in classes}


def build_asyncapi(
    topology: Topology | None = None, *, vhost: str = DEFAULT_VHOST
) -> dict[str, Any]:
    """The whole document as JSON-ready data; the default topology unless one is given."""
    topology = topology or TopologySettings().topology()
    events = list(EVENT_TYPES.values())
    routing_keys = list(dict.fromkeys(c.routing_key for c in events))
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    for key in routing_keys:
        classes = [c for c in events if c.routing_key == key]
        channels[key] = {
            "address": key,
            "title": f"{topology.exchange} / {key}",
            "description": f"Events published to the {topology.exchange_type} exchange "
            f"`{topology.exchange}` with routing key `{key}`.",
            "messages": _message_refs(classes),
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {
                        "name": topology.exchange,
                        "type": topology.exchange_type,
                        "durable": True,
                        "autoDelete": False,
                        "vhost": vhost,
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }
        operations[f"publish.{key}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{key}"},
            "summary": "The order service's outbox relay publishes with publisher confirms.",
            "messages": [{"$ref": f"#/channels/{key}/messages/{message_key(c)}"} for c in classes],
            "bindings": {
                "amqp": {
                    "deliveryMode": 2,
                    "mandatory": True,
                    "timestamp": True,
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        }

    for queue in topology.queues:
        if queue.name in channels:
            raise ValueError(f"queue {queue.name!r} has the name of a routing key")
        classes = [
            c for c in events if any(topic_matches(b, c.routing_key) for b in queue.bindings)
        ]
        channels[queue.name] = {
            "address": queue.name,
            "title": f"queue {queue.name}",
            "description": f"Durable {queue.queue_type} queue bound to `{topology.exchange}` "
            f"with {', '.join(f'`{b}`' for b in queue.bindings)}; failed messages wait in "
            f"{', '.join(f'`{r}`' for r in queue.retry_queues)} and are parked in "
            f"`{queue.dlq}`.",
            "messages": _message_refs(classes),
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {
                        "name": queue.name,
                        "durable": True,
                        "exclusive": False,
                        "autoDelete": False,
                        "vhost": vhost,
                    },
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
            "x-exchange": topology.exchange,
            "x-bindings": list(queue.bindings),
            "x-queue-type": queue.queue_type,
            "x-retry-queues": list(queue.retry_queues),
            "x-dead-letter-queue": queue.dlq,
        }
        operations[f"consume.{queue.name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{queue.name}"},
            "summary": "Acked after the effect is committed; transient failures go to a retry "
            "tier, permanent ones to the parking lot.",
            "messages": [
                {"$ref": f"#/channels/{queue.name}/messages/{message_key(c)}"} for c in classes
            ],
            "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
        }

    _, schemas = msgspec.json.schema_components([Envelope, *events], ref_template=_SCHEMA_REF)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "orderflow events",
            "version": "1.0.0",
            "description": "Every event on the broker (common/events.py) and where it goes "
            "(common/messaging/topology.py). A body is an envelope whose `data` is the event; "
            "changes are additive within a version, a breaking change is a new version. "
            "Generated by `make asyncapi`.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": {**schemas, "AmqpHeaders": _HEADERS_SCHEMA},
            "messages": {message_key(c): _message(c) for c in events},
        },
    }


def render(document: dict[str, Any]) -> str:
    """Stable text for the committed file: indented, ending in a newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def asyncapi_handler(document: dict[str, Any], path: str = ASYNCAPI_PATH) -> HTTPRouteHandler:
    """GET handler serving the document next to the OpenAPI schema."""
    body = json.dumps(document).encode()

    @get(path, include_in_schema=False, sync_to_thread=False)
    def asyncapi_document() -> Response[bytes]:
        return Response(body, media_type="application/json")

    return asyncapi_document


def main(argv: list[str]) -> int:
    text = render(build_asyncapi())
    if not argv:
        sys.stdout.write(text)
        return 0
    Path(argv[0]).write_text(text)
    print(f"wrote {argv[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
