"""Exact money: the text of an amount and an average, never through a float."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["average", "money"]

_AVERAGE_QUANTUM = Decimal("0.0001")
_CENT = Decimal("0.01")


def money(amount: Decimal) -> str:
    """Exact text of an amount: at least two places, trailing zeros beyond them dropped."""
    if amount == amount.quantize(_CENT):
        return str(amount.quantize(_CENT))
    return str(amount.normalize())


def average(revenue: Decimal, count: int) -> Decimal:
    if count <= 0:
        return Decimal(0)
    return (revenue / count).quantize(_AVERAGE_QUANTUM, rounding=ROUND_HALF_EVEN)
