"""UTC time as every process handles it: aware in Python, naive UTC in MySQL DATETIME columns."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["aware_utc", "naive_utc", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def naive_utc(value: datetime) -> datetime:
    """MySQL DATETIME has no zone; we store UTC. A naive value is taken as UTC already."""
    if value.tzinfo is UTC:  # the common case: no conversion
        return value.replace(tzinfo=None)
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def aware_utc(value: datetime) -> datetime:
    """A DATETIME read back from MySQL (naive, UTC) as an aware datetime."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
