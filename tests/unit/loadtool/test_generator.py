from __future__ import annotations

import json
from decimal import Decimal

import pytest

from loadtool.generator import GeneratorConfig, OrderGenerator


def test_same_seed_gives_same_bodies() -> None:
    a = OrderGenerator(GeneratorConfig(idempotency_keys=True), seed=42).take(50)
    b = OrderGenerator(GeneratorConfig(idempotency_keys=True), seed=42).take(50)
    assert [o.body for o in a] == [o.body for o in b]


def test_same_seed_still_gets_fresh_idempotency_keys_each_run() -> None:
    a = OrderGenerator(GeneratorConfig(idempotency_keys=True), seed=42).take(50)
    b = OrderGenerator(GeneratorConfig(idempotency_keys=True), seed=42).take(50)
    assert not {o.idempotency_key for o in a} & {o.idempotency_key for o in b}


def test_different_seeds_differ() -> None:
    a = OrderGenerator(GeneratorConfig(), seed=1).take(20)
    b = OrderGenerator(GeneratorConfig(), seed=2).take(20)
    assert a != b


def test_bodies_follow_the_order_contract_and_stay_within_ranges() -> None:
    config = GeneratorConfig(
        min_customer=3, max_customer=4, min_product=7, max_product=7, min_quantity=2, max_quantity=3
    )
    for order in OrderGenerator(config, seed=5).take(200):
        body = json.loads(order.body)
        assert set(body) == {"customer_id", "product_id", "quantity", "total_amount", "currency"}
        assert body["customer_id"] in {"cust-3", "cust-4"}
        assert body["product_id"] == "prod-7"
        assert 2 <= body["quantity"] <= 3
        assert isinstance(body["total_amount"], str)  # exact decimal text, never a float
        assert Decimal(body["total_amount"]) == order.total_amount
        assert order.total_amount == order.total_amount.quantize(Decimal("0.01"))
        assert order.total_amount > 0
        assert body["currency"] == "USD"
        assert order.idempotency_key is None


def test_idempotency_keys_are_unique_per_order() -> None:
    orders = OrderGenerator(GeneratorConfig(idempotency_keys=True), seed=9).take(1000)
    keys = {o.idempotency_key for o in orders}
    assert None not in keys
    assert len(keys) == 1000


@pytest.mark.parametrize(
    "config",
    [
        GeneratorConfig(min_quantity=0),
        GeneratorConfig(min_customer=5, max_customer=4),
        GeneratorConfig(min_unit_cents=0),
    ],
)
def test_invalid_ranges_are_rejected(config: GeneratorConfig) -> None:
    with pytest.raises(ValueError):
        OrderGenerator(config)
