from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from loadtool.audit import (
    ALL_CURRENCIES,
    AnalyticsRecord,
    AuditConfig,
    Auditor,
    Summary,
    evaluate,
    parse_summary,
    parse_timestamp,
)
from loadtool.runner import AcceptedOrder


def accepted(*amounts: str) -> list[AcceptedOrder]:
    return [AcceptedOrder(f"o{i}", Decimal(a), "USD") for i, a in enumerate(amounts)]


def record(order_id: str, amount: str, occurred: float = 100.0, applied: float = 100.05):
    return AnalyticsRecord(order_id, Decimal(amount), "USD", occurred, applied)


def test_an_order_missing_from_analytics_is_lost() -> None:
    orders = accepted("1.00", "2.00")
    report = evaluate(orders, [record("o0", "1.00")], None)
    assert report.lost == ["o1"]
    assert not report.ok


def test_an_analytics_record_listed_twice_is_doubled() -> None:
    orders = accepted("1.00")
    report = evaluate(orders, [record("o0", "1.00"), record("o0", "1.00")], None)
    assert report.analytics_duplicates == ["o0"]
    assert report.doubled_count == 1
    assert not report.ok


def test_a_channel_that_sent_twice_is_doubled_and_a_missing_send_is_reported() -> None:
    orders = accepted("1.00", "2.00", "3.00")
    analytics = [record(f"o{i}", a) for i, a in enumerate(("1.00", "2.00", "3.00"))]
    sends = [("o0", {"log": 1}), ("o1", {"log": 2, "smtp": 1}), ("o2", {"log": 0})]
    report = evaluate(orders, analytics, sends)
    assert report.doubled == ["o1"]
    assert report.notifications_missing == ["o2"]
    assert report.sends_by_channel == {"log": 3, "smtp": 1}
    assert report.lost == []
    assert not report.ok


def test_unknown_ids_in_answers_are_ignored() -> None:
    orders = accepted("1.00")
    report = evaluate(
        orders,
        [record("o0", "1.00"), record("other", "5.00")],
        [("o0", {"log": 1}), ("other", {"log": 3})],
    )
    assert report.ok
    assert report.doubled == []


def test_amount_mismatch_is_counted() -> None:
    report = evaluate(accepted("1.00"), [record("o0", "1.01")], None)
    assert report.amount_mismatches == ["o0"]


def test_e2e_latency_is_applied_minus_occurred() -> None:
    orders = accepted("1.00", "2.00")
    analytics = [record("o0", "1.00", 10.0, 10.020), record("o1", "2.00", 10.0, 10.100)]
    report = evaluate(orders, analytics, None)
    assert report.e2e_latency.count == 2
    assert report.e2e_latency.max_ms == pytest.approx(100.0)
    assert report.first_applied_at == pytest.approx(10.020)
    assert report.last_applied_at == pytest.approx(10.100)


def test_summary_delta_is_compared_exactly_per_currency() -> None:
    orders = [
        AcceptedOrder("a", Decimal("10.10"), "USD"),
        AcceptedOrder("b", Decimal("0.05"), "EUR"),
    ]
    before = Summary(5, {"USD": Decimal("100.00"), "EUR": Decimal("1.00")})
    after = Summary(7, {"USD": Decimal("110.10"), "EUR": Decimal("1.04")})
    report = evaluate(orders, [record("a", "10.10"), record("b", "0.05")], None, before, after)
    assert report.orders_difference == 0
    assert report.revenue_difference == {"EUR": Decimal("-0.01"), "USD": Decimal("0.00")}
    assert not report.summary_matches


def test_summary_with_one_total_compares_all_currencies_together() -> None:
    orders = accepted("0.10", "0.20")
    before = Summary(0, {ALL_CURRENCIES: Decimal("0")})
    after = Summary(2, {ALL_CURRENCIES: Decimal("0.30")})
    report = evaluate(orders, [record("o0", "0.10"), record("o1", "0.20")], None, before, after)
    assert report.summary_matches  # 0.1 + 0.2 == 0.3 exactly: Decimal, never float


def test_parse_summary_accepts_a_string_or_a_mapping_and_refuses_floats() -> None:
    assert parse_summary({"total_orders": 3, "total_revenue": "1.50"}) == Summary(
        3, {ALL_CURRENCIES: Decimal("1.50")}
    )
    assert parse_summary({"total_orders": "3", "total_revenue": {"USD": "1.50"}}) == Summary(
        3, {"USD": Decimal("1.50")}
    )
    with pytest.raises(ValueError):
        parse_summary({"total_orders": 1, "total_revenue": 1.5})


def test_parse_timestamp_reads_rfc3339_and_epoch() -> None:
    assert parse_timestamp("1970-01-01T00:00:01Z") == 1.0
    assert parse_timestamp("1970-01-01T01:00:01+01:00") == 1.0
    assert parse_timestamp(2.5) == 2.5
    assert parse_timestamp("nonsense") is None
    assert parse_timestamp(None) is None


class FakeServices:
    """Analytics and notification audit endpoints over in-memory state, for MockTransport."""

    def __init__(self) -> None:
        self.applied: dict[str, str] = {}
        self.sends: dict[str, dict[str, int]] = {}
        self.summary_orders = 0
        self.summary_revenue = Decimal("0.00")
        self.audit_calls: list[int] = []
        self.on_poll: list[Any] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/analytics/summary":
            return httpx.Response(
                200,
                json={
                    "total_orders": self.summary_orders,
                    "total_revenue": str(self.summary_revenue),
                },
            )
        ids = json.loads(request.content)["order_ids"]
        assert len(ids) <= 3, "the auditor must chunk"
        if request.url.path == "/analytics/audit":
            self.audit_calls.append(len(ids))
            if self.on_poll:
                self.on_poll.pop(0)()
            found = [i for i in ids if i in self.applied]
            return httpx.Response(
                200,
                json={
                    "orders": [
                        {
                            "order_id": i,
                            "total_amount": self.applied[i],
                            "currency": "USD",
                            "occurred_at": "2026-01-01T00:00:00Z",
                            "applied_at": "2026-01-01T00:00:00.050Z",
                        }
                        for i in found
                    ],
                    "missing": [i for i in ids if i not in self.applied],
                },
            )
        if request.url.path == "/notifications/audit":
            found = [i for i in ids if i in self.sends]
            return httpx.Response(
                200,
                json={
                    "orders": [{"order_id": i, "sends": self.sends[i]} for i in found],
                    "missing": [i for i in ids if i not in self.sends],
                },
            )
        return httpx.Response(404)

    def apply(self, order: AcceptedOrder, sends: int = 1) -> None:
        self.applied[order.order_id] = str(order.total_amount)
        self.sends[order.order_id] = {"log": sends}
        self.summary_orders += 1
        self.summary_revenue += order.total_amount


def auditor(fake: FakeServices, timeout: float = 2.0) -> Auditor:
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake.handler), base_url="http://test")
    config = AuditConfig(
        analytics_url="http://test",
        notifications_url="http://test",
        timeout=timeout,
        poll_interval=0.01,
        settle=0.0,
        summary_timeout=0.1,
        chunk_size=3,
    )
    return Auditor(config, client)


async def test_auditor_waits_until_late_orders_arrive_then_reports_all_ok() -> None:
    fake = FakeServices()
    orders = accepted("1.00", "2.00", "3.00", "4.00", "5.00")
    audit = auditor(fake)
    before = await audit.summary()
    for order in orders[:3]:
        fake.apply(order)

    def arrive_late() -> None:
        for order in orders[3:]:
            fake.apply(order)

    fake.on_poll = [lambda: None, arrive_late]
    report = await audit.run(orders, before)
    assert report.ok, report
    assert report.lost == []
    assert not report.timed_out
    assert report.summary_matches
    assert report.e2e_latency.p99_ms == pytest.approx(50.0)
    assert max(fake.audit_calls) <= 3


async def test_auditor_times_out_and_reports_lost_and_doubled() -> None:
    fake = FakeServices()
    orders = accepted("1.00", "2.00", "3.00", "4.00")
    audit = auditor(fake, timeout=0.1)
    before = await audit.summary()
    fake.apply(orders[0])
    fake.apply(orders[1], sends=2)
    report = await audit.run(orders, before)
    assert report.timed_out
    assert report.lost == ["o2", "o3"]
    assert report.doubled == ["o1"]
    assert report.orders_difference == -2
    assert report.revenue_difference == {ALL_CURRENCIES: Decimal("-7.00")}
    assert not report.ok


async def test_auditor_without_summary_still_audits() -> None:
    fake = FakeServices()
    orders = accepted("1.00")
    fake.apply(orders[0])
    report = await auditor(fake).run(orders, None)
    assert report.ok
    assert not report.summary_checked
    assert report.notes


def test_orders_that_end_cancelled_rejected_or_failed_are_not_expected_in_booked_revenue():
    orders = accepted("10.00", "10.00", "10.00", "10.00")
    statuses = ["confirmed", "payment_failed", "rejected", "created"]
    analytics = [
        AnalyticsRecord(f"o{i}", Decimal("10.00"), "USD", 1.0, 2.0, status)
        for i, status in enumerate(statuses)
    ]
    before = Summary(total_orders=5, revenue={"USD": Decimal("50.00")})
    after = Summary(total_orders=7, revenue={"USD": Decimal("70.00")})
    report = evaluate(orders, analytics, None, before, after)
    assert report.orders_difference == 0
    assert report.revenue_difference == {"USD": Decimal(0)}
    assert report.final_states == {
        "confirmed": 1,
        "created": 1,
        "payment_failed": 1,
        "rejected": 1,
    }
