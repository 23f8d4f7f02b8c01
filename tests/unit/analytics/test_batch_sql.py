"""The batch SQL text: values escaped by the driver, upserts for MariaDB and MySQL >= 8.0.20."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from pymysql.converters import escape_item, escape_string

from analytics_service.adapters.fact_rows import FACT_COLUMNS, fact_row, fact_values
from analytics_service.event_facts import fact_from_event
from common.sql_text import SqlText, fast_escape
from tests.unit.analytics.fakes import order_delivery


def _escape(value: object) -> str:
    if isinstance(value, str):
        return "'" + escape_string(value) + "'"
    return str(escape_item(value, "utf8mb4"))


def test_values_are_escaped_never_interpolated():
    sql = SqlText(_escape, row_alias=False)
    row = sql.row(["o'brien; DROP TABLE inbox; --", Decimal("12.50"), 3, datetime(2026, 3, 1)])
    assert row == "('o\\'brien; DROP TABLE inbox; --',12.50,3,'2026-03-01 00:00:00')"


def test_an_aggregate_upsert_adds_with_values_on_mariadb():
    sql = SqlText(_escape, row_alias=False)
    text = sql.upsert(
        "currency_totals",
        ("currency", "order_count", "updated_at"),
        [("USD", 1, datetime(2026, 3, 1))],
        add=("order_count",),
        greatest=("updated_at",),
    )
    assert text == (
        "INSERT INTO currency_totals (currency, order_count, updated_at) "
        "VALUES ('USD',1,'2026-03-01 00:00:00') ON DUPLICATE KEY UPDATE "
        "order_count = order_count + VALUES(order_count), "
        "updated_at = GREATEST(updated_at, VALUES(updated_at))"
    )


def test_an_upsert_uses_a_row_alias_where_mysql_wants_one():
    sql = SqlText(_escape, row_alias=True)
    text = sql.upsert("order_facts", ("order_id",), [("o-1",)], lock_only="order_id")
    assert text == (
        "INSERT INTO order_facts (order_id) VALUES ('o-1') AS new "
        "ON DUPLICATE KEY UPDATE order_id = order_id"
    )
    added = sql.upsert("status_totals", ("currency", "revenue"), [("USD", 1)], add=("revenue",))
    assert added.endswith("revenue = revenue + new.revenue")


def test_a_fact_is_written_in_the_column_order_it_is_read_back():

    delivery = order_delivery(amount="12.50")
    fact = fact_from_event(delivery.envelope, delivery.event)
    now = datetime(2026, 3, 1, 12, 0)
    row = fact_row(fact, now, inserting=True)
    assert set(row) == set(FACT_COLUMNS)
    assert fact_values(fact, now) == tuple(row[c] for c in FACT_COLUMNS)


def test_the_fast_escape_renders_a_batch_s_types_as_the_driver_does():
    fast = fast_escape(_escape, escape_string)
    values = [
        "o'brien\\",
        0,
        -42,
        Decimal("12.50"),
        Decimal("1E+2"),
        datetime(2026, 3, 1, 12, 0, 5, 123),
        datetime(2026, 3, 1),
        None,
        True,
    ]
    assert [fast(v) for v in values] == [_escape(v) for v in values]


def test_the_fast_escape_escapes_text_exactly_where_the_driver_does():
    fast = fast_escape(_escape, escape_string)
    texts = ["plain", "ünïcödé", "50%s", "", *(f"a{c}b" for c in "\0\n\r\x1a'\"\\")]
    assert [fast(t) for t in texts] == [_escape(t) for t in texts]


def test_the_fast_escape_writes_bytes_as_a_hex_literal():
    assert fast_escape(_escape, escape_string)(b"\x00'\\{}") == "X'00275c7b7d'"
