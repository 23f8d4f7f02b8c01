"""Webhook, SMTP and log channels: signature, Message-ID, timeout and how failures are
classified."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import msgspec
import pytest

from notification_worker.notifiers import (
    LogChannel,
    PermanentSendError,
    SmtpChannel,
    TransientSendError,
    WebhookChannel,
    sign,
)
from notification_worker.planning import Notification
from notification_worker.settings import SmtpSettings, WebhookSettings
from notification_worker.templates import render

NOTIFICATION = Notification(
    event_id="e-1",
    event_type="OrderCreated",
    kind="created",
    due=None,
    primary=True,
    fields={
        "order_id": "o-1",
        "customer_id": "c",
        "product_id": "p",
        "quantity": 1,
        "total_amount": "1.10",
        "currency": "EUR",
        "status": "created",
        "created_at": "2026-01-01T00:00:00Z",
        "event_id": "e-1",
    },
)
MESSAGE = render("OrderCreated", "created", "webhook", NOTIFICATION.fields)
SETTINGS = WebhookSettings(url="http://hooks.test/in", secret="s3cret", timeout=1.0)


def channel(handler) -> tuple[WebhookChannel, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record), timeout=SETTINGS.timeout)
    return WebhookChannel(SETTINGS, client), seen


async def test_a_webhook_posts_signed_json_with_an_idempotency_key():
    hook, seen = channel(lambda r: httpx.Response(204))
    await hook.send(NOTIFICATION, MESSAGE)
    request = seen[0]
    body = request.content
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert request.headers["x-signature-sha256"] == f"sha256={expected}" == sign("s3cret", body)
    assert request.headers["idempotency-key"] == "e-1:created"
    assert request.headers["content-type"] == "application/json"
    payload = msgspec.json.decode(body)
    assert payload["data"]["total_amount"] == "1.10"
    assert payload["kind"] == "created"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_a_webhook_answering_5xx_408_or_429_is_transient(status):
    hook, _ = channel(lambda r: httpx.Response(status))
    with pytest.raises(TransientSendError, match=str(status)):
        await hook.send(NOTIFICATION, MESSAGE)


@pytest.mark.parametrize("status", [301, 400, 401, 404, 410, 422])
async def test_a_webhook_answering_another_4xx_is_permanent(status):
    hook, _ = channel(lambda r: httpx.Response(status))
    with pytest.raises(PermanentSendError, match=str(status)):
        await hook.send(NOTIFICATION, MESSAGE)


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_a_webhook_that_cannot_be_reached_or_times_out_is_transient(error):
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    hook, _ = channel(fail)
    with pytest.raises(TransientSendError):
        await hook.send(NOTIFICATION, MESSAGE)


async def test_the_log_channel_always_sends(capsys):
    await LogChannel().send(NOTIFICATION, MESSAGE)
    assert "notification_sent" in capsys.readouterr().out


def test_a_mail_carries_a_message_id_derived_from_the_notification_key_and_its_order():
    email = SmtpChannel(SmtpSettings())._email(NOTIFICATION, MESSAGE)
    again = SmtpChannel(SmtpSettings())._email(NOTIFICATION, MESSAGE)
    assert email["Message-ID"] == again["Message-ID"] == "<e-1.created@notification-worker>"
    assert email["X-Order-Id"] == "o-1" and email["X-Notification-Kind"] == "created"
