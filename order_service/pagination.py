"""Opaque keyset cursors for the newest-first order listing."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

__all__ = ["InvalidCursorError", "decode_cursor", "encode_cursor"]


class InvalidCursorError(ValueError):
    pass


# The range MySQL's DATETIME holds; a cursor the service wrote always falls inside it.
_EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    raw = f"{created_at.astimezone(UTC).isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        stamp, raw_id = text.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        created_at = created_at.astimezone(UTC)
        if not _EARLIEST <= created_at < _LATEST:
            raise ValueError("timestamp out of range")
        return created_at, uuid.UUID(raw_id)
    except (ValueError, UnicodeError, OverflowError) as exc:
        # Any bad input is a 4xx: never let a crafted cursor reach the database or raise.
        raise InvalidCursorError("cursor is not valid") from exc
