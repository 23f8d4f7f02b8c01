"""The POST /orders body, decoded and validated in one pass with every field error at once.

Litestar decoded the body strictly into ``CreateOrderRequest`` (stopping at the first error),
the route validated it again field by field, and a rejected body was decoded a third time to
list all of its errors. As a DTO, the body is decoded once (JSON numbers kept exact) and checked
once by the domain's ``validate_new_order``; ``CreateOrderRequest`` still describes it in the
OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from litestar.dto import AbstractDTO
from litestar.dto._backend import DTOBackend
from litestar.dto.data_structures import DTOFieldDefinition
from litestar.typing import FieldDefinition

from common.http import RequestValidationError
from order_service.api.schemas import CreateOrderRequest, decode_new_order
from order_service.domain.order import NewOrder

__all__ = ["NewOrderBody"]


class NewOrderBody(AbstractDTO[NewOrder]):
    def decode_bytes(self, value: bytes) -> NewOrder:
        new, errors = decode_new_order(value)
        if new is None:
            raise RequestValidationError(errors)
        return new

    @classmethod
    def create_for_field_definition(
        cls,
        field_definition: FieldDefinition,
        handler_id: str,
        backend_cls: type[DTOBackend] | None = None,
    ) -> None:
        """No generated backend: ``decode_bytes`` is the whole decoder."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: Any
    ) -> Any:
        return schema_creator.for_field_definition(
            FieldDefinition.from_annotation(CreateOrderRequest)
        )

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        return False
