"""The notification worker's parking lot: the generic tool of common/messaging/dlq.py."""

from __future__ import annotations

from common.messaging.dlq import REPLAYED_AT_HEADER, ParkedMessage, list_parked, purge, replay

__all__ = ["REPLAYED_AT_HEADER", "ParkedMessage", "list_parked", "purge", "replay"]
