"""Pure domain rules: validation, ids, cursors."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from order_service.domain.order import new_order_id
from order_service.domain.validation import validate_new_order
from order_service.pagination import InvalidCursorError, decode_cursor, encode_cursor


def raw(**over):
    base = {"customer_id": "c", "product_id": "p", "quantity": 1, "total_amount": "1.00"}
    base.update(over)
    return base


def test_valid_order_is_quantized_to_the_currency():
    new, errors = validate_new_order(raw(total_amount=Decimal("0.1")))
    assert errors == [] and new is not None
    assert new.total_amount == Decimal("0.10") and str(new.total_amount) == "0.10"


def test_trailing_zeros_beyond_the_minor_unit_are_fine():
    new, errors = validate_new_order(raw(total_amount="5.1000"))
    assert errors == [] and new is not None
    assert str(new.total_amount) == "5.10"


def test_float_amounts_are_refused():
    _, errors = validate_new_order(raw(total_amount=0.1))
    assert errors[0]["field"] == "total_amount"


def test_booleans_are_not_quantities():
    _, errors = validate_new_order(raw(quantity=True))
    assert errors == [{"field": "quantity", "message": "must be an integer"}]


def test_uuid7_ids_sort_by_creation_time():
    ids = [new_order_id() for _ in range(50)]
    assert all(i.version == 7 for i in ids)
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)


def test_cursor_round_trips_and_rejects_garbage():
    when, oid = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), uuid.uuid4()
    assert decode_cursor(encode_cursor(when, oid)) == (when, oid)
    for bad in ("", "!!", "Zm9v", encode_cursor(when, oid)[:-3] + "***"):
        with pytest.raises(InvalidCursorError):
            decode_cursor(bad)


def _raw_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "text",
    [
        # Issue 13 item 9: year 1 at +01:00 is before datetime.min in UTC (OverflowError).
        "0001-01-01T00:00:00+01:00|86107927-d125-4eca-93aa-aed8d7db64fa",
        "9999-12-31T23:59:59-01:00|86107927-d125-4eca-93aa-aed8d7db64fa",
        "0999-12-31T23:59:59+00:00|86107927-d125-4eca-93aa-aed8d7db64fa",
        "2026-01-01T00:00:00|86107927-d125-4eca-93aa-aed8d7db64fa",
        "2026-01-01T00:00:00+00:00|not-a-uuid",
        "2026-01-01T00:00:00+00:00",
        "\x00\xff|\x00",
    ],
)
def test_a_crafted_cursor_is_invalid_input_not_a_crash(text: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode_cursor(_raw_cursor(text))
