"""A webhook receiver of the test's own: counts every delivery where it lands, by its
idempotency key, so the audit sees a notification sent twice even if the sender recorded it
once."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from loadtool.http_receiver import HttpReceiver, Reply

__all__ = ["Delivery", "WebhookReceiver"]


@dataclass(frozen=True)
class Delivery:
    key: str  # the idempotency-key header: "<event_id>:<kind>"
    order_id: str | None
    kind: str | None
    event_type: str | None


class WebhookReceiver(HttpReceiver):
    """``async with WebhookReceiver() as hook:`` - point NOTIFY_WEBHOOK_URL at ``hook.url``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.deliveries: list[Delivery] = []
        self.malformed = 0

    @property
    def url(self) -> str:
        return f"{self.base_url}/hook"

    def counts(self) -> Counter[str]:
        return Counter(d.key for d in self.deliveries)

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> Reply:
        self._record(headers, body)
        return b"204 No Content", b"text/plain", b""

    def _record(self, headers: dict[str, str], body: bytes) -> None:
        key = headers.get("idempotency-key")
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not key or not isinstance(payload, dict):
            self.malformed += 1
            return
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        order_id = data.get("order_id") if data else None
        self.deliveries.append(
            Delivery(
                key=key,
                order_id=str(order_id) if order_id is not None else None,
                kind=payload.get("kind"),
                event_type=payload.get("event_type"),
            )
        )
