"""The audit's recount of the analytics totals: each comparison can fail, and says where."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from loadtool import audit as audit_module
from loadtool.analytics_db import AnalyticsSnapshot
from loadtool.audit import AuditConfig, Auditor, ReadOuts, judge_deliveries, judge_recount
from loadtool.recount import Fact, Kind, Tally, Totals, recount
from loadtool.runner import AcceptedOrder

T0 = datetime(2026, 11, 29, 9, 15, tzinfo=UTC)
T1 = datetime(2026, 11, 29, 10, 5, tzinfo=UTC)


def fact(n: int, status: str = "confirmed", amount: str = "10.00", product: str = "p1") -> Fact:
    return Fact(
        order_id=f"o{n}",
        customer_id=f"c{n % 2}",
        product_id=product,
        quantity=2,
        total_amount=Decimal(amount),
        currency="USD",
        status=status,
        created_at=T0.replace(tzinfo=None),
        status_changed_at=T1.replace(tzinfo=None),
    )


FACTS = [
    fact(1),
    fact(2, "payment_failed", "5.50"),
    fact(3, "paid", "7.25", product="p2"),
    fact(4, "created", "1.00", product="p3"),
]


def accepted_of(facts: list[Fact]) -> list[AcceptedOrder]:
    return [
        AcceptedOrder(
            f.order_id, f.total_amount, f.currency, f.customer_id, f.product_id, f.quantity
        )
        for f in facts
    ]


def money(d: Decimal) -> str:
    return f"{d:.2f}"


def answers(totals: Totals, limit: int = 100) -> ReadOuts:
    """What a correct analytics API answers for these totals (the shapes of its responses)."""
    booked = {k[0]: t for k, t in totals.nonzero("currency").items()}
    states: dict[str, dict[str, int]] = {}
    for (currency, state), t in totals.nonzero("status").items():
        states.setdefault(currency, {})[state] = t.orders
    rec = {k[1]: t for k, t in totals.nonzero("recognised").items()}
    all_states: dict[str, int] = {}
    for mine in states.values():
        for s, n in mine.items():
            all_states[s] = all_states.get(s, 0) + n
    summary = {
        "total_orders": sum(t.orders for t in booked.values()),
        "total_revenue": {c: money(t.revenue) for c, t in booked.items()},
        "recognised_orders": sum(t.orders for t in rec.values()),
        "orders_by_status": all_states,
        "cancelled_orders": all_states.get("cancelled", 0),
        "rejected_orders": all_states.get("rejected", 0),
        "payment_failed_orders": all_states.get("payment_failed", 0),
        "by_currency": [
            {
                "currency": c,
                "total_orders": booked.get(c, Tally()).orders,
                "total_revenue": money(booked.get(c, Tally()).revenue),
                "recognised_orders": rec.get(c, Tally()).orders,
                "recognised_revenue": money(rec.get(c, Tally()).revenue),
                "orders_by_status": states.get(c, {}),
            }
            for c in sorted(set(booked) | set(states))
        ],
    }
    buckets = []
    for hour in ("2026-11-29T09:00:00", "2026-11-29T10:00:00"):
        b = {k[1]: t for k, t in totals.nonzero("hourly").items() if k[0] == hour}
        r = {k[1]: t for k, t in totals.nonzero("recognised").items() if k[0] == hour}
        buckets.append(
            {
                "start": hour + "Z",
                "order_count": sum(t.orders for t in b.values()),
                "revenue": {c: money(t.revenue) for c, t in b.items()},
                "recognised_count": sum(t.orders for t in r.values()),
                "recognised_revenue": {c: money(t.revenue) for c, t in r.items()},
            }
        )
    revenue = {"from": "2026-11-29T09:00:00Z", "to": "2026-11-29T11:00:00Z", "buckets": buckets}

    def top(kind: Kind, id_field: str) -> dict[str, Any]:
        rows = sorted(totals.nonzero(kind).items(), key=lambda kv: (-kv[1].revenue, kv[0]))
        return {
            "items": [
                {
                    id_field: k[0],
                    "currency": k[1],
                    "revenue": money(t.revenue),
                    "order_count": t.orders,
                    "quantity": t.quantity,
                }
                for k, t in rows[:limit]
            ]
        }

    return ReadOuts(summary, revenue, top("product", "product_id"), top("customer", "customer_id"))


def snapshot(facts: list[Fact], stored: Totals | None = None) -> AnalyticsSnapshot:
    return AnalyticsSnapshot({f.order_id: f for f in facts}, stored or recount(facts))


def doubled(totals: Totals, order: Fact) -> Totals:
    """The stored totals after ``order``'s event was applied a second time (no inbox)."""
    again = recount([order])
    out = Totals({k: dict(v) for k, v in totals.tables.items()})
    for kind, rows in again.tables.items():
        for key, tally in rows.items():
            out[kind][key] = out[kind].get(key, Tally()) + tally
    return out


def test_totals_that_agree_with_the_facts_and_the_accepted_orders_pass() -> None:
    verdict = judge_recount(
        accepted_of(FACTS), snapshot(FACTS), answers(recount(FACTS)), exclusive=True
    )
    assert verdict.clean, verdict


def test_an_event_applied_twice_shows_in_every_stored_table_it_touched() -> None:
    stored = doubled(recount(FACTS), FACTS[0])
    verdict = judge_recount(
        accepted_of(FACTS), snapshot(FACTS, stored), answers(recount(FACTS)), exclusive=True
    )
    where = {m.where for m in verdict.aggregate_mismatches}
    assert where == {
        "stored currency",
        "stored hourly",
        "stored product",
        "stored customer",
        "stored recognised",
        "stored status",
    }
    currency = next(m for m in verdict.aggregate_mismatches if m.where == "stored currency")
    assert currency.actual == "4 orders / 28.25 / qty 8"
    assert currency.expected == "3 orders / 18.25 / qty 6"
    assert not verdict.clean


def test_an_api_serving_doubled_totals_is_reported_in_summary_buckets_and_top_lists() -> None:
    served = answers(doubled(recount(FACTS), FACTS[0]))
    verdict = judge_recount(accepted_of(FACTS), snapshot(FACTS), served, exclusive=True)
    keys = {(m.where, m.key) for m in verdict.api_mismatches}
    assert ("summary", "total_orders") in keys
    assert ("summary", "total_revenue USD") in keys
    assert ("summary", "orders_by_status") in keys
    assert ("revenue bucket 2026-11-29T09:00:00", "order_count") in keys
    assert ("revenue bucket 2026-11-29T10:00:00", "recognised_count") in keys
    assert ("top-products", "p1/USD") in keys
    assert any(w == "top-customers" for w, _ in keys)


def test_a_top_list_may_order_ties_either_way_but_not_skip_a_higher_entry() -> None:
    facts = [
        fact(1, "created", "3.00", "a"),
        fact(2, "created", "3.00", "b"),
        fact(3, "created", "1.00", "c"),
    ]
    good = answers(recount(facts), limit=2)
    assert good.top_products is not None
    swapped = dict(good.top_products)
    swapped["items"] = list(reversed(good.top_products["items"]))
    ok = judge_recount(
        accepted_of(facts),
        snapshot(facts),
        dataclasses.replace(good, top_products=swapped),
        exclusive=True,
        top_limit=2,
    )
    assert not [m for m in ok.api_mismatches if m.where == "top-products"]
    wrong = dict(good.top_products)
    third = answers(recount(facts), limit=3).top_products
    assert third is not None
    wrong["items"] = [good.top_products["items"][0], third["items"][2]]
    bad = judge_recount(
        accepted_of(facts),
        snapshot(facts),
        dataclasses.replace(good, top_products=wrong),
        exclusive=True,
        top_limit=2,
    )
    assert [m.key for m in bad.api_mismatches if m.where == "top-products"] == [
        "revenues in rank order"
    ]


def test_facts_unlike_their_orders_and_facts_of_no_order_are_reported() -> None:
    orders = accepted_of(FACTS[:3])
    orders[0] = dataclasses.replace(orders[0], total_amount=Decimal("10.01"))
    exclusive = judge_recount(orders, snapshot(FACTS), None, exclusive=True)
    assert [m.key for m in exclusive.fact_mismatches] == ["o1 total_amount"]
    assert exclusive.unexpected_facts == ["o4"]
    shared = judge_recount(orders, snapshot(FACTS), None, exclusive=False)
    assert shared.unexpected_facts == []
    missing = judge_recount(accepted_of(FACTS), snapshot(FACTS[:3]), None, exclusive=True)
    assert missing.facts_missing == ["o4"]


def test_every_expected_notification_delivered_once_passes() -> None:
    states = {"o1": "confirmed", "o2": "payment_failed"}
    deliveries = [
        ("e1:created", "o1", "created"),
        ("e2:confirmed", "o1", "confirmed"),
        ("e3:created", "o2", "created"),
        ("e4:payment_failed", "o2", "payment_failed"),
    ]
    verdict = judge_deliveries(states, deliveries)
    assert verdict.clean and verdict.expected == 4 and verdict.delivered == 4


def test_a_webhook_received_twice_is_a_redelivery_and_a_missing_one_is_missing() -> None:
    states = {"o1": "confirmed", "o2": "payment_failed"}
    deliveries = [
        ("e1:created", "o1", "created"),
        ("e1:created", "o1", "created"),
        ("e2:confirmed", "o1", "confirmed"),
        ("e3:created", "o2", "created"),
        ("e5:confirmed", "o2", "confirmed"),
    ]
    verdict = judge_deliveries(states, deliveries)
    assert verdict.redelivered == ["e1:created"] and not verdict.clean
    assert verdict.missing == ["o2:payment_failed"]
    assert verdict.unexpected == ["o2:confirmed (e5:confirmed)"]


def test_one_notification_sent_under_two_keys_is_a_double() -> None:
    verdict = judge_deliveries(
        {"o1": "created"}, [("e1:created", "o1", "created"), ("e9:created", "o1", "created")]
    )
    assert verdict.doubled == ["o1:created under 2 keys"]


class AnalyticsApi:
    """The audit and totals endpoints of a correct analytics API over ``facts``."""

    def __init__(self, facts: list[Fact]) -> None:
        self.facts = facts

    def handler(self, request: httpx.Request) -> httpx.Response:
        readouts = answers(recount(self.facts))
        path = request.url.path
        if path == "/analytics/audit":
            return httpx.Response(
                200,
                json={
                    "orders": [
                        {
                            "order_id": f.order_id,
                            "total_amount": str(f.total_amount),
                            "currency": f.currency,
                            "occurred_at": "2026-11-29T09:15:00Z",
                            "applied_at": "2026-11-29T09:15:00.1Z",
                            "status": f.status,
                        }
                        for f in self.facts
                    ]
                },
            )
        body = {
            "/analytics/summary": readouts.summary,
            "/analytics/revenue": readouts.revenue,
            "/analytics/top-products": readouts.top_products,
            "/analytics/top-customers": readouts.top_customers,
        }.get(path)
        return httpx.Response(200, json=body) if body is not None else httpx.Response(404)


@pytest.mark.parametrize("double", [False, True])
async def test_the_auditor_fails_the_run_when_a_stored_total_was_applied_twice(
    monkeypatch: pytest.MonkeyPatch, double: bool
) -> None:
    stored = doubled(recount(FACTS), FACTS[0]) if double else recount(FACTS)

    async def read(url: str, timeout: float = 10.0) -> AnalyticsSnapshot:
        return snapshot(FACTS, stored)

    monkeypatch.setattr(audit_module, "read_snapshot", read)
    api = AnalyticsApi(FACTS)
    client = httpx.AsyncClient(transport=httpx.MockTransport(api.handler))
    config = AuditConfig(
        analytics_url="http://test",
        notifications_url=None,
        poll_interval=0.01,
        settle=0.0,
        summary_timeout=0.1,
        analytics_database_url="mysql+aiomysql://x:y@127.0.0.1/db",
        exclusive=True,
    )
    async with Auditor(config, client) as auditor:
        report = await auditor.run(accepted_of(FACTS), None)
    assert report.recount_checked
    assert report.facts_read == 4
    assert report.ok is not double
    assert bool(report.aggregate_mismatches) is double
    assert report.api_mismatches == []


def test_the_cli_recounts_by_default_and_exits_1_when_a_total_disagrees() -> None:
    from loadtool.cli import EXIT_AUDIT_FAILED, build_parser, exit_code, options_from_args
    from loadtool.runner import LoadResult

    options = options_from_args(
        build_parser().parse_args(["--count", "1", "--analytics-database-url", "mysql://a/b"])
    )
    assert options.audit is not None
    assert options.audit.analytics_database_url == "mysql://a/b"
    assert not options.audit.exclusive
    skipped = options_from_args(build_parser().parse_args(["--count", "1", "--no-recount"]))
    assert skipped.audit is not None and skipped.audit.analytics_database_url is None
    report = audit_module.AuditReport(accepted=1)
    report.aggregate_mismatches = ["stored currency USD: reported 2 orders, recount says 1"]
    assert exit_code(options, LoadResult(), report) == EXIT_AUDIT_FAILED
