"""Each audit the fault suite relies on can fail: test doubles that double-apply, and the audit
reporting the double (a fault run that passes is only worth something if this one fails)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from analytics_service.adapters.database import driver_connection
from analytics_service.adapters.fact_store import (
    MySqlAnalyticsStore,
    _aggregate_upserts,
    _run,
)
from analytics_service.aggregation import Change, OrderFact, delta
from common.sql_text import SqlText, fast_escape
from loadtool.analytics_db import read_snapshot
from loadtool.audit import judge_deliveries, judge_recount
from loadtool.generator import GeneratedOrder
from loadtool.runner import AcceptedOrder
from notification_worker.notifiers import SmtpChannel, WebhookChannel
from notification_worker.planning import Notification
from notification_worker.settings import SmtpSettings, WebhookSettings
from notification_worker.templates import Rendered
from tests.faults.sends import await_deliveries
from tests.faults.write_paths import match_write_paths
from tests.support.analytics_db import ANALYTICS_DB_URL, PORT, fresh_analytics_database
from tests.support.smtp_receiver import SmtpReceiver
from tests.support.webhook_receiver import Delivery as SendDelivery
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


class DoubleApplyingStore(MySqlAnalyticsStore):
    """The analytics store with its inbox check switched off: every event the inbox admitted
    is added to the aggregates a second time, as a redelivery without the inbox would be."""

    async def apply(
        self, consumer: str, facts: Sequence[OrderFact], applied_at: datetime
    ) -> list[Change]:
        changes = await super().apply(consumer, facts, applied_at)
        effective = [c for c in changes if c.effective]
        if effective:
            async with driver_connection(self._engine) as (driver, row_alias):
                sql = SqlText(fast_escape(driver.escape, driver.escape_string), row_alias=row_alias)
                now = applied_at.replace(tzinfo=None)
                statements = _aggregate_upserts(sql, delta(effective), now)
                await _run(driver, ";".join([*statements, "COMMIT"]))
        return changes


def order_fact(n: int, amount: str) -> OrderFact:
    now = datetime.now(UTC)
    return OrderFact(
        order_id=uuid.uuid4(),
        event_id=uuid.uuid4(),
        customer_id=f"audit-c{n}",
        product_id=f"audit-p{n}",
        quantity=n,
        total_amount=Decimal(amount),
        currency="USD",
        status="created",
        created_at=now,
        occurred_at=now,
        status_changed_at=now,
    )


async def _apply_and_audit(store_class: type[MySqlAnalyticsStore]) -> list[str]:
    """Two orders applied through ``store_class`` into a fresh database, then recounted."""
    facts = [order_fact(1, "10.00"), order_fact(2, "20.50")]
    async with fresh_analytics_database() as name:
        url = ANALYTICS_DB_URL.format(port=PORT, database=name)
        engine = create_async_engine(url)
        try:
            await store_class(engine).apply("analytics", facts, datetime.now(UTC))
        finally:
            await engine.dispose()
        snapshot = await read_snapshot(url)
    accepted = [
        AcceptedOrder(
            str(f.order_id), f.total_amount, f.currency, f.customer_id, f.product_id, f.quantity
        )
        for f in facts
    ]
    verdict = judge_recount(accepted, snapshot, None, exclusive=True)
    assert verdict.facts_read == 2
    assert verdict.facts_missing == [] and verdict.unexpected_facts == []
    return [m.describe() for m in verdict.aggregate_mismatches]


async def test_the_recount_passes_the_real_store_and_reports_a_store_without_inbox() -> None:
    assert await _apply_and_audit(MySqlAnalyticsStore) == []
    mismatches = await _apply_and_audit(DoubleApplyingStore)
    currency = [m for m in mismatches if m.startswith("stored currency USD")]
    assert currency == [
        "stored currency USD: reported 4 orders / 61 / qty 6, recount says 2 orders / 30.5 / qty 3"
    ], mismatches
    kinds = {m.split(" ")[1] for m in mismatches}
    assert kinds == {"currency", "hourly", "product", "customer", "status"}, mismatches


def notification(order_id: str, kind: str = "created") -> tuple[Notification, Rendered]:
    fields = {"order_id": order_id, "total_amount": "1.00", "currency": "USD"}
    return (
        Notification(str(uuid.uuid4()), "OrderCreated", kind, None, True, fields),
        Rendered("subject", "text", fields),
    )


async def test_the_receiver_counts_a_webhook_sent_twice_and_the_audit_reports_it() -> None:
    async with WebhookReceiver() as hook:
        channel = WebhookChannel(WebhookSettings(url=hook.url, secret="s", timeout=5))
        try:
            once, twice = notification("o1"), notification("o2")
            await channel.send(*once)
            # A worker without its sent-record check: a redelivered event sends again.
            await channel.send(*twice)
            await channel.send(*twice)
        finally:
            await channel.close()
        assert hook.counts() == {once[0].key: 1, twice[0].key: 2}
        verdict = judge_deliveries(
            {"o1": "created", "o2": "created"},
            [(d.key, d.order_id, d.kind) for d in hook.deliveries],
        )
    assert verdict.redelivered == [twice[0].key] and not verdict.clean
    assert verdict.missing == [] and verdict.unexpected == []


async def test_the_smtp_receiver_counts_mail_by_message_id_and_the_audit_reports_doubles() -> None:
    async with SmtpReceiver() as mail:
        channel = SmtpChannel(SmtpSettings(host=mail.host, port=mail.port, timeout=5))
        once, twice = notification("o1"), notification("o2")
        # Two events for one transition: the same order and kind under two Message-IDs.
        first, second = notification("o3"), notification("o3")
        for sent in (once, twice, twice, first, second):
            # A worker without its sent-record check: a redelivered event mails again.
            await channel.send(*sent)
        assert mail.counts()[f"<{twice[0].event_id}.created@notification-worker>"] == 2
        verdict = judge_deliveries(
            {"o1": "created", "o2": "created", "o3": "created"},
            [(d.key, d.order_id, d.kind) for d in mail.deliveries],
        )
    assert len(mail.deliveries) == 5 and mail.malformed == 0
    assert verdict.redelivered == [f"<{twice[0].event_id}.created@notification-worker>"]
    assert verdict.doubled == ["o3:created under 2 keys"], verdict.doubled
    assert verdict.missing == [] and verdict.unexpected == []


def generated(n: int, key: str | None) -> GeneratedOrder:
    return GeneratedOrder(
        body=b"{}",
        total_amount=Decimal("5.00"),
        currency="USD",
        idempotency_key=key,
        customer_id="run-c1",
        product_id=f"run-p{n}",
        quantity=1,
    )


def committed(order_id: str, n: int) -> dict[str, Any]:
    return {
        "id": order_id,
        "product_id": f"run-p{n}",
        "total_amount": "5.00",
        "currency": "USD",
        "customer_id": "run-c1",
        "quantity": 1,
    }


def test_unkeyed_requests_are_matched_to_what_was_committed_and_doubles_are_reported() -> None:
    sent = [generated(0, "k0"), generated(1, None), generated(2, None), generated(3, None)]
    answered = [AcceptedOrder("a0", Decimal("5.00"), "USD"), AcceptedOrder("a1", Decimal(5), "USD")]
    rows = [
        committed("a0", 0),
        committed("a1", 1),
        committed("x2", 2),  # its answer never came: committed anyway, found by listing
        committed("x3", 3),  # a server that applied one unkeyed request twice
        committed("y3", 3),
        committed("z9", 9),  # no request asked for it
    ]
    paths = match_write_paths(sent, answered, [], rows)
    assert paths.unkeyed_sent == 3
    assert paths.unkeyed_committed == 3
    assert paths.unkeyed_committed_without_201 == 3
    assert paths.doubled == ["run-p3: ['x3', 'y3']"]
    assert paths.phantom == ["z9"]
    assert paths.lost == []
    lost = match_write_paths(sent, answered, [], rows[:1])
    assert lost.lost == ["a1"]


class _ConfirmedOrders:
    """The analytics side of the delivery wait: every order confirmed."""

    async def analytics_records(self, ids: Sequence[str]) -> tuple[list[Any], bool]:
        return [SimpleNamespace(order_id=i, status="confirmed") for i in ids], True


def _backlog(count: int) -> tuple[list[AcceptedOrder], list[SendDelivery], list[SendDelivery]]:
    orders = [
        AcceptedOrder(order_id=str(uuid.uuid4()), total_amount=Decimal(1), currency="USD")
        for _ in range(count)
    ]
    due = [
        SendDelivery(f"{o.order_id}:{kind}", o.order_id, kind, None)
        for o in orders
        for kind in ("created", "confirmed")
    ]
    return orders, due, []


async def _await(orders: list[AcceptedOrder], arrived: list[SendDelivery], **bounds: float) -> Any:
    return await await_deliveries(
        cast(Any, _ConfirmedOrders()),
        cast(Any, SimpleNamespace(deliveries=arrived)),
        cast(Any, SimpleNamespace(deliveries=arrived)),
        orders,
        settle=0.0,
        **bounds,
    )


async def test_the_wait_for_notifications_goes_on_while_a_backlog_still_drains() -> None:
    orders, due, arrived = _backlog(3)

    async def drain() -> None:  # one notification every 0.2 s: 1.2 s, past the 0.5 s bound
        for delivery in due:
            await asyncio.sleep(0.2)
            arrived.append(delivery)

    draining = asyncio.create_task(drain())
    verdict = await _await(orders, arrived, timeout=0.5, stall=0.6)
    await draining
    assert verdict.complete, verdict.channels["webhook"].missing


async def test_the_wait_for_notifications_ends_once_nothing_more_arrives() -> None:
    orders, due, arrived = _backlog(2)
    arrived.extend(due[:-1])  # the last notification never comes
    started = time.monotonic()
    verdict = await _await(orders, arrived, timeout=0.5, stall=0.3)
    assert not verdict.complete
    assert verdict.channels["webhook"].missing == [due[-1].key]
    assert time.monotonic() - started < 1.2  # not the 1.5 s hard bound
