"""Every bad input is a 4xx problem with a field-level error, never a 500."""

from __future__ import annotations

import pytest

from common.testing import unique_name

pytestmark = pytest.mark.integration


def good() -> dict[str, object]:
    return {
        "customer_id": unique_name("c"),
        "product_id": "p-1",
        "quantity": 1,
        "total_amount": "10.00",
        "currency": "EUR",
    }


INVALID_FIELDS = [
    ({"quantity": 0}, "quantity"),
    ({"quantity": -3}, "quantity"),
    ({"quantity": 1.5}, "quantity"),
    ({"total_amount": "0"}, "total_amount"),
    ({"total_amount": "-1.00"}, "total_amount"),
    ({"total_amount": "1.234"}, "total_amount"),
    ({"total_amount": 1.234}, "total_amount"),
    ({"total_amount": "abc"}, "total_amount"),
    ({"total_amount": "NaN"}, "total_amount"),
    ({"total_amount": "Infinity"}, "total_amount"),
    ({"total_amount": "1e30"}, "total_amount"),
    ({"customer_id": ""}, "customer_id"),
    ({"customer_id": "x" * 65}, "customer_id"),
    ({"product_id": ""}, "product_id"),
    ({"product_id": "y" * 200}, "product_id"),
    ({"currency": "XYZ"}, "currency"),
    ({"currency": "usd"}, "currency"),
    ({"currency": 840}, "currency"),
    ({"coupon": "FREE"}, "coupon"),
]


@pytest.mark.parametrize(("patch", "field"), INVALID_FIELDS)
async def test_invalid_field_is_422_with_an_entry_for_that_field(order_client, patch, field):
    async with order_client() as (client, _):
        response = await client.post("/orders", json={**good(), **patch})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["status"] == 422
        assert [e["field"] for e in problem["errors"]] == [field]


async def test_every_bad_field_gets_its_own_entry(order_client):
    async with order_client() as (client, _):
        body = {
            "customer_id": "",
            "product_id": "p",
            "quantity": 0,
            "total_amount": "-1",
            "currency": "ZZZ",
            "extra": True,
        }
        response = await client.post("/orders", json=body)
        assert response.status_code == 422
        fields = sorted(e["field"] for e in response.json()["errors"])
        assert fields == ["currency", "customer_id", "extra", "quantity", "total_amount"]


@pytest.mark.parametrize("missing", ["customer_id", "product_id", "quantity", "total_amount"])
async def test_missing_required_field_is_422(order_client, missing):
    async with order_client() as (client, _):
        body = good()
        del body[missing]
        response = await client.post("/orders", json=body)
        assert response.status_code == 422
        assert [e["field"] for e in response.json()["errors"]] == [missing]


async def test_currency_defaults_to_usd_and_yen_has_no_decimals(order_client):
    async with order_client() as (client, _):
        body = good()
        del body["currency"]
        assert (await client.post("/orders", json=body)).json()["currency"] == "USD"
        yen = await client.post(
            "/orders", json={**good(), "currency": "JPY", "total_amount": "1500"}
        )
        assert yen.status_code == 201 and yen.json()["total_amount"] == "1500"
        bad_yen = await client.post(
            "/orders", json={**good(), "currency": "JPY", "total_amount": "15.5"}
        )
        assert bad_yen.status_code == 422


@pytest.mark.parametrize("raw", ["{bad json", "", "[1, 2]", '"order"', "null", "\xff\xfe"])
async def test_malformed_body_is_400_problem(order_client, raw):
    async with order_client() as (client, _):
        response = await client.post(
            "/orders", content=raw.encode("latin-1"), headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_body_over_the_size_limit_is_413(order_client):
    async with order_client(max_body_bytes=1024) as (client, _):
        body = {**good(), "customer_id": "c" * 4000}
        response = await client.post("/orders", json=body)
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_bad_idempotency_key_header_is_400(order_client):
    async with order_client() as (client, _):
        response = await client.post("/orders", json=good(), headers={"Idempotency-Key": "k" * 300})
        assert response.status_code == 400
