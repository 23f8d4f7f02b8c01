"""Message templates per event type, notification kind and channel.

A template only sees the event's fields (plus ``event_id``), so adding an event means adding a
block here and nothing else. A channel without its own template uses the kind's ``default``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Rendered", "Template", "has_template", "render"]


@dataclass(frozen=True)
class Template:
    subject: str
    text: str


@dataclass(frozen=True)
class Rendered:
    """What a channel sends: a subject and text for people, ``fields`` for machines."""

    subject: str
    text: str
    fields: dict[str, Any]


DEFAULT = "default"

_TEMPLATES: dict[tuple[str, str], dict[str, Template]] = {
    ("OrderCreated", "created"): {
        DEFAULT: Template(
            subject="Order {order_id} received",
            text="Order {order_id}: {quantity} x {product_id} for {total_amount} {currency} "
            "(customer {customer_id}, status {status}).",
        ),
        "smtp": Template(
            subject="Your order {order_id} was received",
            text="Hello {customer_id},\n\n"
            "we received your order {order_id}: {quantity} x {product_id}, "
            "total {total_amount} {currency}.\n\nStatus: {status}\n",
        ),
    },
    ("OrderCreated", "reminder"): {
        DEFAULT: Template(
            subject="Reminder: order {order_id}",
            text="Reminder for order {order_id} ({quantity} x {product_id}, "
            "{total_amount} {currency}), created at {created_at}.",
        ),
        "smtp": Template(
            subject="A reminder about your order {order_id}",
            text="Hello {customer_id},\n\n"
            "a reminder about your order {order_id} of {created_at}: {quantity} x "
            "{product_id}, total {total_amount} {currency}.\n",
        ),
    },
}


def has_template(event_type: str, kind: str) -> bool:
    return (event_type, kind) in _TEMPLATES


def render(event_type: str, kind: str, channel: str, fields: dict[str, Any]) -> Rendered:
    templates = _TEMPLATES[(event_type, kind)]
    template = templates.get(channel) or templates[DEFAULT]
    # Values are formatted with str(): Decimal stays exact ("19.98"), never a float.
    values = {k: str(v) for k, v in fields.items()}
    return Rendered(
        subject=template.subject.format_map(values),
        text=template.text.format_map(values),
        fields=fields,
    )
