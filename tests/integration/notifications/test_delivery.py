"""Sending, retrying, parking and de-duplicating against real RabbitMQ and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from common.messaging.topology import TopologySettings
from common.testing import TcpProxy, wait_until
from notification_worker.notifiers import sign
from notification_worker.settings import SmtpSettings
from tests.integration.notifications.conftest import (
    TIERS,
    WEBHOOK_SECRET,
    audit_of,
    free_port,
    metric,
    order_created,
    publish,
    queue_depths,
    webhook_settings,
)

pytestmark = pytest.mark.integration


async def parked_headers(amqp, topology: TopologySettings) -> dict:
    spec = topology.topology().queue(topology.notifications_queue)
    channel = await amqp.channel()
    try:
        queue = await channel.get_queue(spec.dlq, ensure=False)
        message = await queue.get(no_ack=False, fail=False)
        assert message is not None, "nothing parked"
        await message.nack(requeue=True)
        return dict(message.headers or {})
    finally:
        await channel.close()


async def test_an_order_created_through_the_order_service_produces_one_log_send(
    start_worker, amqp, cleanup_topology
):
    from common.testing_http import serve_app
    from order_service.app import create_app
    from order_service.settings import OrderSettings

    worker = await start_worker(channels=("log",))
    settings = dataclasses.replace(
        OrderSettings.from_env(), topology=cleanup_topology, relay_poll_interval=0.1
    )
    # Only the OrderCreated send is under test (test_lifecycle.py covers the transitions).
    if hasattr(settings, "fulfilment_enabled"):
        settings = dataclasses.replace(settings, fulfilment_enabled=False)
    async with serve_app(create_app(settings, configure_logs=False)) as client:
        response = await client.post(
            "/orders",
            json={
                "customer_id": "cust-n",
                "product_id": "prod-1",
                "quantity": 1,
                "total_amount": "5.00",
                "currency": "USD",
            },
        )
        assert response.status_code == 201, response.text
        order_id = response.json()["id"]
        await wait_until(
            lambda: audit_of(worker, order_id), timeout=15, message="the order's log send"
        )
    await wait_until(
        lambda: asyncio.sleep(
            0,
            metric(
                worker, "events_consumed_total", {"event_type": "OrderCreated", "outcome": "sent"}
            ),
        ),
        message="the event acked",
    )
    assert await audit_of(worker, order_id) == {"log": 1}
    assert metric(worker, "sent_total", {"channel": "log"}) == 1


async def test_a_webhook_that_fails_twice_gets_one_delivery_after_two_retries_spaced_by_the_tiers(
    start_worker, receiver, amqp, cleanup_topology
):
    receiver.statuses = [503, 500]
    worker = await start_worker(channels=("webhook",), webhook=webhook_settings(receiver))
    order_id, body = order_created()
    await publish(amqp, cleanup_topology, body)

    await wait_until(
        lambda: asyncio.sleep(0, receiver.successes()),
        timeout=10,
        message="a successful webhook delivery",
    )
    await wait_until(lambda: audit_of(worker, order_id), message="the send record")
    assert len(receiver.successes()) == 1
    assert [r.status for r in receiver.received] == [503, 500, 200]
    first, second, third = (r.at for r in receiver.received)
    assert TIERS[0] <= second - first < TIERS[0] + 0.4
    assert TIERS[1] <= third - second < TIERS[1] + 0.4
    delivered = receiver.successes()[0]
    assert delivered.headers["x-signature-sha256"] == sign(WEBHOOK_SECRET, delivered.body)
    assert delivered.json()["data"]["order_id"] == order_id
    assert await audit_of(worker, order_id) == {"webhook": 1}
    assert metric(worker, "events_retried_total", {"tier": "200ms"}) == 1
    assert metric(worker, "events_retried_total", {"tier": "500ms"}) == 1
    assert metric(worker, "failed_total", {"channel": "webhook", "kind": "transient"}) == 2


async def test_a_webhook_returning_400_parks_the_message_at_once_with_the_reason(
    start_worker, receiver, amqp, cleanup_topology
):
    receiver.default_status = 400
    worker = await start_worker(channels=("webhook",), webhook=webhook_settings(receiver))
    spec = cleanup_topology.topology().queue(cleanup_topology.notifications_queue)
    _, body = order_created()
    await publish(amqp, cleanup_topology, body)

    async def parked() -> bool:
        return (await queue_depths(amqp, cleanup_topology))[spec.dlq] == 1

    await wait_until(parked, timeout=5, message="the message in the parking lot")
    headers = await parked_headers(amqp, cleanup_topology)
    assert headers["x-park-reason"] == "permanent_failure"
    assert "HTTP 400" in headers["x-last-error"]
    assert headers["x-attempt"] == 1
    assert len(receiver.received) == 1
    assert metric(worker, "events_parked_total", {"reason": "permanent_failure"}) == 1


async def test_a_message_whose_attempts_are_exhausted_is_parked(
    start_worker, receiver, amqp, cleanup_topology
):
    receiver.default_status = 503
    worker = await start_worker(
        channels=("webhook",), webhook=webhook_settings(receiver), max_attempts=3
    )
    spec = cleanup_topology.topology().queue(cleanup_topology.notifications_queue)
    _, body = order_created()
    await publish(amqp, cleanup_topology, body)

    async def parked() -> bool:
        return (await queue_depths(amqp, cleanup_topology))[spec.dlq] == 1

    await wait_until(parked, timeout=10, message="the message in the parking lot")
    headers = await parked_headers(amqp, cleanup_topology)
    assert headers["x-park-reason"] == "attempts_exhausted"
    assert "HTTP 503" in headers["x-last-error"]
    assert headers["x-attempt"] == 3
    assert len(receiver.received) == 3
    assert metric(worker, "events_parked_total", {"reason": "attempts_exhausted"}) == 1


async def test_the_same_event_delivered_twice_sends_once(
    start_worker, receiver, amqp, cleanup_topology
):
    receiver.delay = 0.3  # both copies are in flight together, so the claim is what dedupes
    worker = await start_worker(channels=("log", "webhook"), webhook=webhook_settings(receiver))
    order_id, body = order_created()
    await publish(amqp, cleanup_topology, body)
    await publish(amqp, cleanup_topology, body)

    async def both_settled() -> bool:
        consumed = sum(
            metric(worker, "events_consumed_total", {"event_type": "OrderCreated", "outcome": o})
            for o in ("sent", "duplicate")
        )
        return consumed == 2

    await wait_until(both_settled, timeout=10, message="both copies handled")
    assert await audit_of(worker, order_id) == {"log": 1, "webhook": 1}
    assert len(receiver.received) == 1
    assert metric(worker, "skipped_duplicate_total", {"channel": "webhook"}) == 1
    assert metric(worker, "skipped_duplicate_total", {"channel": "log"}) == 1

    # A redelivery long after the first (a replay, a relay duplicate) is skipped as well.
    await publish(amqp, cleanup_topology, body)
    await wait_until(
        lambda: asyncio.sleep(
            0, metric(worker, "skipped_duplicate_total", {"channel": "webhook"}) == 2
        ),
        message="the third copy skipped",
    )
    assert await audit_of(worker, order_id) == {"log": 1, "webhook": 1}
    assert len(receiver.received) == 1


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.content.decode())
        )
        return "250 OK"


@contextlib.contextmanager
def smtp_server(inbox: _Inbox) -> Iterator[int]:
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"pw"
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


async def test_a_local_smtp_server_receives_a_real_email(start_worker, amqp, cleanup_topology):
    inbox = _Inbox()
    with smtp_server(inbox) as port:
        smtp = SmtpSettings(
            host="127.0.0.1",
            port=port,
            username="worker",
            password="pw",
            sender="orders@example.com",
            recipient="ops@example.com",
            timeout=5,
        )
        worker = await start_worker(channels=("smtp",), smtp=smtp)
        order_id, body = order_created()
        await publish(amqp, cleanup_topology, body)
        await wait_until(
            lambda: audit_of(worker, order_id), timeout=10, message="the email send record"
        )
    assert len(inbox.messages) == 1
    sender, recipients, content = inbox.messages[0]
    assert sender == "orders@example.com"
    assert recipients == ["ops@example.com"]
    assert f"Subject: Your order {order_id} was received" in content
    assert "19.98 USD" in content
    assert await audit_of(worker, order_id) == {"smtp": 1}


async def test_the_worker_reconnects_on_its_own_after_the_broker_connection_drops(
    start_worker, amqp, cleanup_topology
):
    proxy = await TcpProxy("127.0.0.1", 5672).start()
    try:
        worker = await start_worker(
            channels=("log",), rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
        )
        first, body = order_created()
        await publish(amqp, cleanup_topology, body)
        await wait_until(lambda: audit_of(worker, first), message="the first send")

        await proxy.cut()

        async def outage_noticed() -> bool:
            return not await worker.broker.ready()

        await wait_until(outage_noticed, timeout=5, message="the worker to notice the outage")
        second, body = order_created()
        await publish(amqp, cleanup_topology, body)
        await proxy.restore()
        await wait_until(
            lambda: audit_of(worker, second), timeout=15, message="the send after the reconnect"
        )
        assert await audit_of(worker, second) == {"log": 1}
        assert await audit_of(worker, first) == {"log": 1}
    finally:
        await proxy.close()
