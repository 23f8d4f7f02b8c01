"""The analytics consumer against real RabbitMQ and MariaDB."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from common.events import encode_envelope
from common.testing import TcpProxy, unique_name, wait_until
from tests.integration.analytics.conftest import consumed, order_event

pytestmark = pytest.mark.integration


async def _queue_depth(amqp, name: str) -> int:
    channel = await amqp.channel()
    try:
        queue = await channel.declare_queue(name, passive=True)
        return queue.declaration_result.message_count or 0
    finally:
        await channel.close()


def _envelope_json(**changes) -> dict:
    body = json.loads(encode_envelope(order_event()))
    for key, value in changes.items():
        if key.startswith("data_"):
            body["data"][key.removeprefix("data_")] = value
        else:
            body[key] = value
    return body


async def test_an_order_event_becomes_a_fact_and_aggregates(start_consumer, publisher, db):
    customer, product = unique_name("cust"), unique_name("prod")
    events = [
        order_event(customer_id=customer, product_id=product, amount=a, quantity=q)
        for a, q in (("12.50", 1), ("7.25", 3))
    ]
    await start_consumer()
    await publisher.publish(events)

    await db.wait_for_facts([e.data.order_id for e in events])

    assert await db.totals("product_totals", "product_id", [product]) == {
        product: (2, Decimal("19.75"), 4)
    }
    assert await db.totals("customer_totals", "customer_id", [customer]) == {
        customer: (2, Decimal("19.75"), 4)
    }


async def test_redelivered_event_is_counted_once(start_consumer, publisher, db):
    product = unique_name("prod")
    event = order_event(product_id=product, amount="5.00")
    other = order_event(product_id=product, amount="1.00")
    consumer = await start_consumer()

    # Twice in one publish (usually one batch), then again later (a separate batch).
    await publisher.publish([event, event, other])
    await db.wait_for_facts([event.data.order_id, other.data.order_id])
    await publisher.publish([event])

    async def copies_settled() -> bool:
        return consumed(consumer, "applied") == 2 and consumed(consumer, "duplicate") == 2

    await wait_until(copies_settled, timeout=10, message="2 applied and 2 duplicates")
    assert await db.totals("product_totals", "product_id", [product]) == {
        product: (2, Decimal("6.00"), 2)
    }


async def test_poison_message_lands_in_dlq_with_reason_and_consumer_keeps_going(
    start_consumer, publisher, db, amqp, settings
):
    await start_consumer()
    await publisher.publish_raw(b"this is not json")
    await publisher.publish_raw(json.dumps(_envelope_json(event_version=99)).encode())
    await publisher.publish_raw(json.dumps(_envelope_json(data_currency="dollars")).encode())
    good = order_event()
    await publisher.publish([good])

    await db.wait_for_facts([good.data.order_id])
    dlq = settings.topology.topology().queue(settings.topology.analytics_queue).dlq
    channel = await amqp.channel()
    queue = await channel.declare_queue(dlq, passive=True)
    parked = []

    async def three_parked() -> bool:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            parked.append(message.headers)
        return len(parked) == 3

    await wait_until(three_parked, timeout=10, message="three messages parked")
    await channel.close()
    assert {h["x-park-reason"] for h in parked} == {"invalid_payload"}
    errors = " | ".join(str(h["x-last-error"]) for h in parked)
    assert "unsupported version 99" in errors
    assert "currency must be three upper-case letters" in errors


async def test_unknown_event_type_is_acknowledged_and_counted_not_parked(
    start_consumer, publisher, db, amqp, settings
):
    consumer = await start_consumer()
    future = _envelope_json(event_type="OrderTeleported")
    await publisher.publish_raw(
        json.dumps(future).encode(), routing_key="order.teleported", event_type="OrderTeleported"
    )
    good = order_event()
    await publisher.publish([good])
    await db.wait_for_facts([good.data.order_id])

    async def ignored() -> bool:
        return consumed(consumer, "ignored", event_type="OrderTeleported") == 1

    await wait_until(ignored, timeout=5, message="the unknown event counted as ignored")
    spec = settings.topology.topology().queue(settings.topology.analytics_queue)
    assert await _queue_depth(amqp, spec.dlq) == 0


async def test_events_sent_while_the_database_is_unreachable_are_applied_once_after_it_returns(
    start_consumer, publisher, db
):
    proxy = await TcpProxy("127.0.0.1", db.engine.url.port or 3306).start()
    try:
        url = db.engine.url.set(host="127.0.0.1", port=proxy.port)
        # One attempt: the outage must not spend it (DESIGN.md §4 rule 7), nor park anything.
        consumer = await start_consumer(
            database_url=url.render_as_string(hide_password=False), max_attempts=1
        )
        product = unique_name("prod")
        before = [order_event(product_id=product, amount="1.00") for _ in range(5)]
        await publisher.publish(before)
        await db.wait_for_facts([e.data.order_id for e in before])

        await proxy.cut()
        during = [order_event(product_id=product, amount="2.00") for _ in range(20)]
        await publisher.publish(during)

        async def deferred_twice() -> bool:
            return consumed(consumer, "unavailable") >= 40

        await wait_until(deferred_twice, timeout=15, message="the batch deferred during the outage")
        assert await _nothing_applied(db, during)
        await proxy.restore()

        await db.wait_for_facts([e.data.order_id for e in during], timeout=20)
        assert await db.totals("product_totals", "product_id", [product]) == {
            product: (25, Decimal("45.00"), 25)
        }
        assert consumed(consumer, "parked") == 0
    finally:
        await proxy.close()


async def _nothing_applied(db, events) -> bool:
    return await db.fact_count([e.data.order_id for e in events]) == 0


async def test_an_event_that_breaks_the_fold_is_parked_alone_and_its_batch_applied(
    start_consumer, publisher, db, amqp, settings
):
    product = unique_name("prod")
    good = [order_event(product_id=product, amount="3.00") for _ in range(30)]
    # Valid by the contract (zone-aware), but year 1 at +01:00 has no UTC equivalent.
    poison = _envelope_json(data_created_at="0001-01-01T00:00:00+01:00")
    consumer = await start_consumer(batch_linger_seconds=0.2)
    await publisher.publish(good[:15])
    await publisher.publish_raw(json.dumps(poison).encode())
    await publisher.publish(good[15:])

    await db.wait_for_facts([e.data.order_id for e in good], timeout=5)
    assert await db.totals("product_totals", "product_id", [product]) == {
        product: (30, Decimal("90.00"), 30)
    }
    dlq = settings.topology.topology().queue(settings.topology.analytics_queue).dlq

    async def poison_parked() -> bool:
        return await _queue_depth(amqp, dlq) == 1

    await wait_until(poison_parked, timeout=5, message="the poison event parked")
    assert consumed(consumer, "parked") == 1
    assert consumed(consumer, "retried") == 0


async def test_after_a_database_restart_the_next_batch_applies_without_a_retry(
    start_consumer, publisher, db
):
    proxy = await TcpProxy("127.0.0.1", db.engine.url.port or 3306).start()
    try:
        url = db.engine.url.set(host="127.0.0.1", port=proxy.port)
        consumer = await start_consumer(
            database_url=url.render_as_string(hide_password=False), workers=1
        )
        first = order_event()
        await publisher.publish([first])
        await db.wait_for_facts([first.data.order_id])
        # Every pooled connection dies; the server is back at once (a restart).
        await proxy.cut()
        await proxy.restore()

        second = order_event()
        await publisher.publish([second])

        await db.wait_for_facts([second.data.order_id], timeout=5)
        assert consumed(consumer, "retried") == 0
    finally:
        await proxy.close()
