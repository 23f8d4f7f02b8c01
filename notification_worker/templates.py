"""Message templates per event type, notification kind and channel.

A template only sees the event's fields (plus ``event_id``) and the display fields derived
from them in ``_display`` (``reason_text``, ``refund_text``), so adding an event means adding a
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
    ("OrderConfirmed", "confirmed"): {
        DEFAULT: Template(
            subject="Order {order_id} confirmed",
            text="Order {order_id} confirmed: {quantity} x {product_id} for {total_amount} "
            "{currency} (customer {customer_id}).",
        ),
        "smtp": Template(
            subject="Your order {order_id} is confirmed",
            text="Hello {customer_id},\n\n"
            "your order {order_id} is paid and confirmed: {quantity} x {product_id}, "
            "total {total_amount} {currency}.\n",
        ),
    },
    ("OrderPaymentFailed", "payment_failed"): {
        DEFAULT: Template(
            subject="Payment failed for order {order_id}",
            text="Order {order_id}: payment of {total_amount} {currency} failed "
            "({reason_text}); customer {customer_id}.",
        ),
        "smtp": Template(
            subject="Payment for your order {order_id} failed",
            text="Hello {customer_id},\n\n"
            "we could not take the payment of {total_amount} {currency} for your order "
            "{order_id} ({reason_text}). The order will not be shipped.\n",
        ),
    },
    ("OrderRejected", "rejected"): {
        DEFAULT: Template(
            subject="Order {order_id} rejected",
            text="Order {order_id} rejected ({reason_text}): {quantity} x {product_id}, "
            "{total_amount} {currency}; customer {customer_id}.{refund_text}",
        ),
        "smtp": Template(
            subject="We could not fulfil your order {order_id}",
            text="Hello {customer_id},\n\n"
            "we are sorry: your order {order_id} ({quantity} x {product_id}) could not be "
            "fulfilled ({reason_text}).{refund_text}\n",
        ),
    },
    ("OrderCancelled", "cancelled"): {
        DEFAULT: Template(
            subject="Order {order_id} cancelled",
            text="Order {order_id} cancelled ({reason_text}): {quantity} x {product_id}, "
            "{total_amount} {currency}; customer {customer_id}.{refund_text}",
        ),
        "smtp": Template(
            subject="Your order {order_id} was cancelled",
            text="Hello {customer_id},\n\n"
            "your order {order_id} ({quantity} x {product_id}, {total_amount} {currency}) "
            "was cancelled ({reason_text}).{refund_text}\n",
        ),
    },
}


def _display(fields: dict[str, Any]) -> dict[str, str]:
    """Text for optional fields, so a template never prints "None"."""
    reason = fields.get("reason")
    refund = fields.get("refund_id")
    return {
        "reason_text": str(reason).replace("_", " ") if reason else "no reason given",
        "refund_text": (
            f" The payment of {fields.get('total_amount')} {fields.get('currency')} is "
            f"refunded (refund {refund})."
            if refund
            else ""
        ),
    }


def has_template(event_type: str, kind: str) -> bool:
    return (event_type, kind) in _TEMPLATES


def render(event_type: str, kind: str, channel: str, fields: dict[str, Any]) -> Rendered:
    templates = _TEMPLATES[(event_type, kind)]
    template = templates.get(channel) or templates[DEFAULT]
    # Values are formatted with str(): Decimal stays exact ("19.98"), never a float.
    values = {**_display(fields), **{k: str(v) for k, v in fields.items()}}
    return Rendered(
        subject=template.subject.format_map(values),
        text=template.text.format_map(values),
        fields=fields,
    )
