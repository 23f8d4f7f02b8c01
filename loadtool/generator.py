"""Order request bodies: random within the configured ranges, reproducible with a seed."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from decimal import Decimal

__all__ = ["GeneratedOrder", "GeneratorConfig", "OrderGenerator"]

_CENT = Decimal("0.01")


@dataclass(frozen=True)
class GeneratorConfig:
    min_customer: int = 1
    max_customer: int = 1000
    min_product: int = 1
    max_product: int = 100
    min_quantity: int = 1
    max_quantity: int = 5
    min_unit_cents: int = 100
    max_unit_cents: int = 20_000
    currency: str = "USD"
    idempotency_keys: bool = False
    # A run-unique prefix lets an auditor list every order of the run by customer
    # (GET /orders?customer_id=...), including those whose answer never came.
    customer_prefix: str = "cust-"
    product_prefix: str = "prod-"
    # Each order its own product (prefix + sequence number): an order found by listing is
    # matched to exactly one request, even one sent without an Idempotency-Key.
    unique_products: bool = False

    def validate(self) -> None:
        pairs = {
            "customer": (self.min_customer, self.max_customer),
            "product": (self.min_product, self.max_product),
            "quantity": (self.min_quantity, self.max_quantity),
            "unit price (cents)": (self.min_unit_cents, self.max_unit_cents),
        }
        for name, (low, high) in pairs.items():
            if low > high:
                raise ValueError(f"min {name} ({low}) is greater than max {name} ({high})")
        if self.min_quantity < 1:
            raise ValueError("quantity must be at least 1")
        if self.min_unit_cents < 1:
            raise ValueError("unit price must be at least 1 cent")


@dataclass(frozen=True)
class GeneratedOrder:
    """One request: the encoded body plus what the audit needs to check it."""

    body: bytes
    total_amount: Decimal
    currency: str
    idempotency_key: str | None
    customer_id: str | None = None
    product_id: str | None = None
    quantity: int | None = None


class OrderGenerator:
    """Deterministic for a given seed: the same seed yields the same sequence of bodies."""

    def __init__(self, config: GeneratorConfig, seed: int | None = None) -> None:
        config.validate()
        self.config = config
        self._random = random.Random(seed)
        self._sequence = 0

    def next(self) -> GeneratedOrder:
        c = self.config
        rnd = self._random
        quantity = rnd.randint(c.min_quantity, c.max_quantity)
        unit = Decimal(rnd.randint(c.min_unit_cents, c.max_unit_cents)) * _CENT
        total = (unit * quantity).quantize(_CENT)
        customer = f"{c.customer_prefix}{rnd.randint(c.min_customer, c.max_customer)}"
        product_n = rnd.randint(c.min_product, c.max_product)
        if c.unique_products:
            product_n = self._sequence
        self._sequence += 1
        product = f"{c.product_prefix}{product_n}"
        body = {
            "customer_id": customer,
            "product_id": product,
            "quantity": quantity,
            "total_amount": str(total),
            "currency": c.currency,
        }
        # Keys are fresh every run even with a fixed seed: a key reused from an earlier run would
        # replay that run's orders instead of creating new ones.
        key = str(uuid.uuid4()) if c.idempotency_keys else None
        return GeneratedOrder(
            body=json.dumps(body, separators=(",", ":")).encode(),
            total_amount=total,
            currency=c.currency,
            idempotency_key=key,
            customer_id=customer,
            product_id=product,
            quantity=quantity,
        )

    def take(self, count: int) -> list[GeneratedOrder]:
        return [self.next() for _ in range(count)]
