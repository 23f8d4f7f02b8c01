"""Validates a raw order request field by field, reporting every bad field at once."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from order_service.domain.currency import minor_units
from order_service.domain.order import MAX_AMOUNT, MAX_ID_LENGTH, MAX_QUANTITY, NewOrder

__all__ = ["ALLOWED_FIELDS", "validate_new_order"]

ALLOWED_FIELDS = frozenset(NewOrder.__struct_fields__)
DEFAULT_CURRENCY = "USD"
# Checked by hand below, with messages clients already read; every other field of NewOrder is
# checked against its declared type and constraints (_declared), so adding one is a NewOrder edit.
_BY_HAND = frozenset(
    {"customer_id", "product_id", "quantity", "total_amount", "currency", "scheduled_time"}
)
_DECLARED = {f.name: f.type for f in msgspec.structs.fields(NewOrder) if f.name not in _BY_HAND}


def _id(raw: dict[str, Any], name: str, errors: list[dict[str, str]]) -> str:
    value = raw.get(name)
    if name not in raw or value is None:
        errors.append({"field": name, "message": "is required"})
        return ""
    if not isinstance(value, str):
        errors.append({"field": name, "message": "must be a string"})
        return ""
    if not value.strip():
        errors.append({"field": name, "message": "must not be empty"})
    elif len(value) > MAX_ID_LENGTH:
        errors.append({"field": name, "message": f"must be at most {MAX_ID_LENGTH} characters"})
    elif not value.isprintable():
        errors.append({"field": name, "message": "must not contain control characters"})
    return value


def validate_new_order(raw: Any) -> tuple[NewOrder | None, list[dict[str, str]]]:
    """Returns the order or the list of field errors; never raises for bad input.

    ``total_amount`` may be a JSON string or number; numbers must already be Decimals (parsed
    from their text, never through a float).
    """
    if not isinstance(raw, dict):
        return None, [{"field": "", "message": "the body must be a JSON object"}]
    errors: list[dict[str, str]] = []
    errors.extend(
        {"field": str(name), "message": "unknown field"}
        for name in raw
        if name not in ALLOWED_FIELDS
    )
    customer_id = _id(raw, "customer_id", errors)
    product_id = _id(raw, "product_id", errors)

    quantity = raw.get("quantity")
    if "quantity" not in raw or quantity is None:
        errors.append({"field": "quantity", "message": "is required"})
    elif isinstance(quantity, bool) or not isinstance(quantity, int):
        errors.append({"field": "quantity", "message": "must be an integer"})
    elif quantity <= 0:
        errors.append({"field": "quantity", "message": "must be greater than 0"})
    elif quantity > MAX_QUANTITY:
        errors.append({"field": "quantity", "message": f"must be at most {MAX_QUANTITY}"})

    currency = raw.get("currency", DEFAULT_CURRENCY)
    places: int | None = None
    if not isinstance(currency, str):
        errors.append({"field": "currency", "message": "must be a string"})
    else:
        places = minor_units(currency)
        if places is None:
            errors.append({"field": "currency", "message": "unknown ISO 4217 currency code"})

    amount = _amount(raw, places, errors)
    scheduled_time = _scheduled_time(raw, errors)
    declared = _declared(raw, errors)
    if errors:
        return None, errors
    assert isinstance(quantity, int) and isinstance(currency, str) and amount is not None
    return (
        NewOrder(
            customer_id=customer_id,
            product_id=product_id,
            quantity=quantity,
            total_amount=amount,
            currency=currency,
            scheduled_time=scheduled_time,
            **declared,
        ),
        [],
    )


def _declared(raw: dict[str, Any], errors: list[dict[str, str]]) -> dict[str, Any]:
    """The fields without a hand-written check, converted to their declared types (a missing
    one takes its default)."""
    values: dict[str, Any] = {}
    for name, kind in _DECLARED.items():
        if name not in raw:
            continue
        try:
            values[name] = msgspec.convert(raw[name], kind)
        except msgspec.ValidationError as exc:
            errors.append({"field": name, "message": str(exc)})
    return values


def _scheduled_time(raw: dict[str, Any], errors: list[dict[str, str]]) -> datetime | None:
    """Optional RFC 3339 start time with an offset; whether it is in range is checked later,
    against the clock (order_service.domain.scheduling.schedule_error)."""
    value = raw.get("scheduled_time")
    if value is None:
        return None
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and "T" in value.upper():
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors.append(
            {
                "field": "scheduled_time",
                "message": "must be an RFC 3339 date-time with a timezone offset",
            }
        )
        return None
    return parsed


def _amount(
    raw: dict[str, Any], places: int | None, errors: list[dict[str, str]]
) -> Decimal | None:
    value = raw.get("total_amount")
    if "total_amount" not in raw or value is None:
        errors.append({"field": "total_amount", "message": "is required"})
        return None
    if isinstance(value, (bool, float)):
        errors.append({"field": "total_amount", "message": "must be a decimal number or string"})
        return None
    try:
        amount = Decimal(value) if isinstance(value, (str, int, Decimal)) else None
    except (InvalidOperation, ValueError):
        amount = None
    if amount is None or not amount.is_finite():
        errors.append({"field": "total_amount", "message": "must be a decimal number"})
        return None
    if amount <= 0:
        errors.append({"field": "total_amount", "message": "must be greater than 0"})
        return None
    if amount > MAX_AMOUNT:
        errors.append({"field": "total_amount", "message": f"must be at most {MAX_AMOUNT}"})
        return None
    if places is None:
        return None
    exponent = amount.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        errors.append(
            {"field": "total_amount", "message": f"has more than {places} decimal places"}
        )
        return None
    return amount.quantize(Decimal(1).scaleb(-places))
