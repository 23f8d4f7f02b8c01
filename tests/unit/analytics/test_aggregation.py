from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from analytics_service.aggregation import (
    InvalidFactError,
    InvalidRangeError,
    OrderFact,
    Totals,
    aggregate,
    average,
    diff,
    money,
    plan_buckets,
)
from analytics_service.event_facts import fact_from_event
from tests.unit.analytics.fakes import order_delivery

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def _fact(
    amount: str,
    *,
    currency: str = "USD",
    product: str = "p1",
    customer: str = "c1",
    created: datetime = NOW,
    quantity: int = 1,
) -> OrderFact:
    return OrderFact(
        uuid.uuid4(),
        uuid.uuid4(),
        customer,
        product,
        quantity,
        Decimal(amount),
        currency,
        "PENDING",
        created,
        created,
    )


def test_fact_keeps_the_exact_amount_and_utc_times():
    delivery = order_delivery(
        amount="12.50", created_at=datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    )
    fact = fact_from_event(delivery.envelope, delivery.event)
    assert str(fact.total_amount) == "12.50"
    assert fact.created_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert fact.created_at.tzinfo == UTC


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"currency": "usd"}, "currency"),
        ({"product_id": "x" * 65}, "product_id"),
        ({"customer_id": "x" * 65}, "customer_id"),
        ({"amount": "1.00001"}, "decimal places"),
        ({"amount": "100000000000000"}, "total_amount"),
    ],
)
def test_an_event_the_tables_cannot_hold_is_rejected_with_the_reason(change, message):
    delivery = order_delivery(**change)
    with pytest.raises(InvalidFactError, match=message):
        fact_from_event(delivery.envelope, delivery.event)


def test_aggregates_sum_per_currency_hour_product_and_customer():
    facts = [
        _fact("10.10", product="p1", customer="c1", quantity=2),
        _fact("0.05", product="p2", customer="c1", created=NOW + timedelta(minutes=29)),
        _fact("7.00", currency="EUR", product="p1", customer="c2"),
        _fact("1.11", product="p1", customer="c2", created=NOW + timedelta(hours=1)),
    ]
    totals = aggregate(facts)
    hour = NOW.replace(minute=0)
    assert totals.currency == {
        ("EUR",): Totals(1, Decimal("7.00"), 1),
        ("USD",): Totals(3, Decimal("11.26"), 4),
    }
    assert totals.hourly == {
        (hour, "EUR"): Totals(1, Decimal("7.00"), 1),
        (hour, "USD"): Totals(2, Decimal("10.15"), 3),
        (hour + timedelta(hours=1), "USD"): Totals(1, Decimal("1.11"), 1),
    }
    assert totals.product[("p1", "USD")] == Totals(2, Decimal("11.21"), 3)
    assert totals.customer[("c2", "EUR")] == Totals(1, Decimal("7.00"), 1)
    assert list(totals.product) == sorted(totals.product)


def test_diff_reports_wrong_missing_and_extra_rows():
    expected = aggregate([_fact("5.00", product="p1")])
    actual = aggregate([_fact("5.00", product="p1")])
    assert diff(expected, actual) == []
    actual.product[("p1", "USD")] = Totals(2, Decimal("9.00"), 2)
    actual.product[("ghost", "USD")] = Totals(1, Decimal("1.00"), 1)
    del actual.customer[("c1", "USD")]
    found = {(d.kind, d.key): (d.expected, d.actual) for d in diff(expected, actual)}
    assert found == {
        ("product", ("ghost", "USD")): (None, Totals(1, Decimal("1.00"), 1)),
        ("product", ("p1", "USD")): (Totals(1, Decimal("5.00"), 1), Totals(2, Decimal("9.00"), 2)),
        ("customer", ("c1", "USD")): (Totals(1, Decimal("5.00"), 1), None),
    }


def test_stored_scale_does_not_make_equal_totals_differ():
    assert Totals(1, Decimal("12.5"), 1) == Totals(1, Decimal("12.5000"), 1)


@pytest.mark.parametrize(
    ("amount", "text"),
    [("12.5000", "12.50"), ("12.3450", "12.345"), ("1500.0000", "1500.00"), ("0", "0.00")],
)
def test_money_is_exact_text_with_at_least_two_places(amount, text):
    assert money(Decimal(amount)) == text


def test_average_rounds_half_even_to_four_places():
    assert average(Decimal("10.00"), 3) == Decimal("3.3333")
    assert average(Decimal("0"), 0) == Decimal("0")


def test_buckets_align_outward_to_whole_hours():
    plan = plan_buckets(
        NOW + timedelta(minutes=1), NOW + timedelta(hours=2), "hour", now=NOW, max_buckets=100
    )
    assert plan.start == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert plan.end == datetime(2026, 3, 1, 15, tzinfo=UTC)
    assert len(plan.starts()) == 3


def test_default_range_is_the_last_day_of_hours_or_month_of_days():
    assert len(plan_buckets(None, None, "hour", now=NOW, max_buckets=1000).starts()) == 24
    days = plan_buckets(None, None, "day", now=NOW, max_buckets=1000)
    assert len(days.starts()) == 30 and days.end == datetime(2026, 3, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("start", "end", "granularity", "field"),
    [
        (NOW, NOW - timedelta(hours=1), "hour", "from"),
        (NOW - timedelta(days=100), NOW, "hour", "from"),
        (NOW, NOW + timedelta(hours=1), "minute", "granularity"),
        (NOW.replace(tzinfo=None), None, "hour", "from"),
    ],
)
def test_invalid_ranges_name_the_field(start, end, granularity, field):
    with pytest.raises(InvalidRangeError) as error:
        plan_buckets(start, end, granularity, now=NOW, max_buckets=1000)
    assert error.value.field == field
