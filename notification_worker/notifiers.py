"""Notification channels: a small protocol, and log, SMTP and webhook implementations.

A channel raises TransientSendError for what may work later (timeouts, refused connections,
5xx/408/429, SMTP 4xx) and PermanentSendError for what never will (webhook 4xx, SMTP 5xx); the
handler maps those to a retry tier or the parking lot. Adding a channel is one class here and one
line in ``build_channels``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import httpx
import msgspec

from common.observability import get_logger
from notification_worker.planning import Notification
from notification_worker.settings import NotificationSettings, SmtpSettings, WebhookSettings
from notification_worker.templates import Rendered

__all__ = [
    "Channel",
    "LogChannel",
    "PermanentSendError",
    "SendError",
    "SmtpChannel",
    "TransientSendError",
    "WebhookChannel",
    "build_channels",
    "message_id",
    "sign",
]

log = get_logger(__name__)


class SendError(Exception):
    """A send did not happen."""


class TransientSendError(SendError):
    """May succeed later: retry through the delay tiers."""


class PermanentSendError(SendError):
    """Will never succeed as it is: park the message."""


class Channel(Protocol):
    name: str
    # Upper bound of one send; the handler enforces it and sizes its send claims from it.
    timeout: float

    async def send(self, notification: Notification, message: Rendered) -> None: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class LogChannel:
    name = "log"
    timeout = 1.0

    async def send(self, notification: Notification, message: Rendered) -> None:
        log.info(
            "notification_sent",
            channel=self.name,
            event_id=notification.event_id,
            kind=notification.kind,
            order_id=notification.order_id,
            subject=message.subject,
            text=message.text,
        )

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def message_id(notification: Notification) -> str:
    """The same on every send of one notification (its idempotency key), so a mail system or a
    receiver drops the copy a redelivery in the crash window may still produce. RFC 5322 allows
    no ':' in a msg-id, so the key's separator becomes a '.'."""
    return f"<{notification.key.replace(':', '.')}@notification-worker>"


class SmtpChannel:
    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self._settings = settings
        self.timeout = settings.timeout

    def _email(self, notification: Notification, message: Rendered) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self._settings.sender
        email["To"] = self._settings.recipient
        email["Subject"] = message.subject
        email["Message-ID"] = message_id(notification)
        # For receivers and filters that sort mail by order: the body is for people.
        if notification.order_id is not None:
            email["X-Order-Id"] = notification.order_id
        email["X-Notification-Kind"] = notification.kind
        email.set_content(message.text)
        return email

    async def send(self, notification: Notification, message: Rendered) -> None:
        s = self._settings
        try:
            await aiosmtplib.send(
                self._email(notification, message),
                hostname=s.host,
                port=s.port,
                username=s.username,
                password=s.password,
                use_tls=s.use_tls,
                start_tls=s.starttls,
                timeout=s.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            error = f"smtp recipients refused: {codes}"
            if all(400 <= c < 500 for c in codes):
                raise TransientSendError(error) from exc
            raise PermanentSendError(error) from exc
        except aiosmtplib.SMTPResponseException as exc:
            error = f"smtp {exc.code}: {exc.message}"
            if 400 <= exc.code < 500:
                raise TransientSendError(error) from exc
            raise PermanentSendError(error) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientSendError(f"smtp: {exc!r}") from exc

    async def ready(self) -> bool:
        return bool(self._settings.host)

    async def close(self) -> None:
        return None


def sign(secret: str, body: bytes) -> str:
    """The signature header value: receivers recompute it over the raw body to trust it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(self, settings: WebhookSettings, client: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self.timeout = settings.timeout
        self._client = client or httpx.AsyncClient(timeout=settings.timeout)

    def body(self, notification: Notification, message: Rendered) -> bytes:
        return msgspec.json.encode(
            {
                "notification_id": notification.key,
                "event_id": notification.event_id,
                "event_type": notification.event_type,
                "kind": notification.kind,
                "subject": message.subject,
                "text": message.text,
                "data": message.fields,
            }
        )

    async def send(self, notification: Notification, message: Rendered) -> None:
        body = self.body(notification, message)
        headers = {
            "content-type": "application/json",
            self._settings.signature_header: sign(self._settings.secret, body),
            # Lets a receiver drop the copy the crash window may still produce.
            "idempotency-key": notification.key,
        }
        try:
            response = await self._client.post(self._settings.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientSendError(f"webhook: {exc!r}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        error = f"webhook HTTP {status}: {response.text[:200]}"
        if status in (408, 429) or status >= 500:
            raise TransientSendError(error)
        raise PermanentSendError(error)

    async def ready(self) -> bool:
        return bool(self._settings.url)

    async def close(self) -> None:
        await self._client.aclose()


def build_channels(settings: NotificationSettings) -> Sequence[Channel]:
    channels: list[Channel] = []
    for name in settings.channels:
        if name == "log":
            channels.append(LogChannel())
        elif name == "smtp":
            channels.append(SmtpChannel(settings.smtp))
        elif name == "webhook":
            channels.append(WebhookChannel(settings.webhook))
    return channels
