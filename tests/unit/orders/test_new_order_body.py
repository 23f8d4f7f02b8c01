"""The POST /orders body is decoded and validated once, reporting every bad field at once."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from common.http import MalformedRequestError, RequestValidationError
from order_service.api import schemas
from order_service.api.new_order_body import NewOrderBody
from order_service.app import create_app
from order_service.domain.validation import validate_new_order
from order_service.settings import OrderSettings


def _decode(raw: bytes) -> Any:
    return NewOrderBody(None).decode_bytes(raw)  # type: ignore[arg-type]


def test_a_valid_body_is_checked_by_one_validation_pass(monkeypatch):
    calls = []
    original = validate_new_order

    def counting(raw):
        calls.append(raw)
        return original(raw)

    monkeypatch.setattr(schemas, "validate_new_order", counting)
    new = _decode(
        b'{"customer_id":"c1","product_id":"p1","quantity":2,"total_amount":19.98,"currency":"USD"}'
    )
    assert new.total_amount == Decimal("19.98")  # a JSON number, never through a float
    assert len(calls) == 1


def test_a_body_with_several_bad_fields_reports_every_one_at_once():
    with pytest.raises(RequestValidationError) as raised:
        _decode(b'{"customer_id":"","quantity":0,"total_amount":"x","currency":"ZZZ","y":1}')
    fields = {e["field"] for e in raised.value.errors}
    assert fields == {"customer_id", "product_id", "quantity", "total_amount", "currency", "y"}


@pytest.mark.parametrize("raw", [b"{bad", b"[1]", b"null"])
def test_a_body_that_is_not_a_json_object_is_malformed(raw):
    with pytest.raises(MalformedRequestError):
        _decode(raw)


def test_the_openapi_document_still_describes_the_body(monkeypatch):
    monkeypatch.setenv("ORDERFLOW_ENV", "local")
    document = create_app(OrderSettings.from_env()).openapi_schema.to_schema()
    body = document["paths"]["/orders"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateOrderRequest"
    }
    assert "total_amount" in document["components"]["schemas"]["CreateOrderRequest"]["required"]
