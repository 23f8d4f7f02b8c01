"""Request bodies of the analytics API (msgspec); the response bodies are the read models of
analytics_service/read_models.py."""

from __future__ import annotations

import uuid

import msgspec

from common.http import FieldError, MalformedRequestError

__all__ = ["AuditRequest", "validate_audit_body"]


class AuditRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    order_ids: list[uuid.UUID]


_audit_decoder = msgspec.json.Decoder(AuditRequest)


def validate_audit_body(raw: bytes) -> list[FieldError]:
    """Field errors for a wrong body; MalformedRequestError when it is not JSON at all."""
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedRequestError(f"the body is not valid JSON: {exc}") from exc
    try:
        _audit_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        return [{"field": _field_of(str(exc)), "message": str(exc)}]
    return []


def _field_of(message: str) -> str:
    # msgspec reports "... - at `$.order_ids[3]`"; the field is the path without "$.".
    if "`$." in message:
        return message.rsplit("`$.", 1)[1].rstrip("`")
    if "missing required field" in message:
        return message.rsplit("`", 2)[-2]
    return ""
