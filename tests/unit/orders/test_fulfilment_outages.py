"""A database or payment-gateway outage (or a lock wait that timed out) defers fulfilment and
scheduled starts without spending attempts and never parks them (DESIGN.md §4 rule 7)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import pytest

from common.events import (
    EventData,
    OrderCreatedV1,
    OrderScheduledV1,
    decode_envelope,
    decode_event_data,
    encode_envelope,
    new_envelope,
)
from common.messaging.consumer import Delivery, PerMessage
from common.messaging.outcomes import Ack, Retry, Unavailable
from order_service.fulfilment import FulfilmentHandler, SchedulerHandler
from order_service.ports import (
    PaymentGatewayError,
    PaymentGatewayUnavailableError,
    TransitionOutcomeUnknownError,
)
from order_service.saga import FulfilmentRequest
from order_service.services import LockTimeoutError
from order_service.unit_of_work import DatabaseUnavailableError

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DOWN = (
    DatabaseUnavailableError("connection refused"),
    LockTimeoutError("lock wait timeout"),
    # A change sent with its COMMIT whose outcome the database could not be asked about.
    TransitionOutcomeUnknownError(uuid.uuid4()),
)


def delivery(data: EventData, attempt: int = 1) -> Delivery:
    envelope = decode_envelope(
        encode_envelope(new_envelope(data, producer="tests", correlation_id="c-1"))
    )
    message: Any = object()
    return Delivery(
        message=message, attempt=attempt, envelope=envelope, event=decode_event_data(envelope)
    )


def created(order_id: uuid.UUID | None = None) -> OrderCreatedV1:
    return OrderCreatedV1(
        order_id=order_id or uuid.uuid4(),
        customer_id="c",
        product_id="p",
        quantity=1,
        total_amount=Decimal("1.00"),
        currency="USD",
        status="created",
        created_at=NOW,
    )


def scheduled(at: datetime) -> OrderScheduledV1:
    return OrderScheduledV1(
        order_id=uuid.uuid4(),
        customer_id="c",
        product_id="p",
        quantity=1,
        total_amount=Decimal("1.00"),
        currency="USD",
        status="scheduled",
        previous_status=None,
        order_version=1,
        changed_at=NOW,
        created_at=NOW,
        scheduled_time=at,
    )


class DownSaga:
    """The whole batch fails (its first read), or only the listed orders do."""

    def __init__(
        self, batch: Exception | None = None, orders: dict[uuid.UUID, Exception] | None = None
    ):
        self.batch = batch
        self.orders = orders or {}

    async def fulfil_batch(
        self, requests: Sequence[FulfilmentRequest]
    ) -> dict[uuid.UUID, str | Exception]:
        if self.batch is not None:
            raise self.batch
        return {r.order_id: self.orders.get(r.order_id, "confirmed") for r in requests}


class DownLifecycle:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def still_scheduled(self, order_id: uuid.UUID) -> bool:
        raise self.error

    async def start_scheduled(self, order_id: uuid.UUID, *, correlation_id: str) -> str:
        raise self.error


@pytest.mark.parametrize("error", DOWN, ids=type)
async def test_a_database_outage_for_the_whole_batch_defers_every_order_without_an_attempt(error):
    handler = FulfilmentHandler(cast(Any, DownSaga(batch=error)))
    outcomes = await handler.handle_batch([delivery(created(), attempt=5), delivery(created())])
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes


@pytest.mark.parametrize("error", DOWN, ids=type)
async def test_an_order_whose_follow_up_hit_the_outage_is_deferred_and_its_neighbours_acked(error):
    stuck = uuid.uuid4()
    saga = DownSaga(orders={stuck: error})
    outcomes = await FulfilmentHandler(cast(Any, saga)).handle_batch(
        [delivery(created()), delivery(created(stuck))]
    )
    assert outcomes[0] == Ack("confirmed")
    assert isinstance(outcomes[1], Unavailable)


@pytest.mark.parametrize("error", DOWN, ids=type)
@pytest.mark.parametrize("offset", [timedelta(hours=1), timedelta(seconds=-1)], ids=["hold", "due"])
async def test_a_scheduled_order_waits_out_a_database_outage_instead_of_retrying(error, offset):
    handler = SchedulerHandler(cast(Any, DownLifecycle(error)), (0.25, 1.0, 60.0), lambda: NOW)
    outcome = await handler.handle(delivery(scheduled(NOW + offset), attempt=3))
    assert isinstance(outcome, Unavailable) and outcome.reason == "database_unavailable"


async def test_a_handler_that_lets_a_database_outage_escape_is_deferred_not_retried():
    class Escaping:
        async def handle(self, delivery: Delivery) -> Any:
            raise DatabaseUnavailableError("pool timeout")

    [outcome] = await PerMessage(Escaping()).handle_batch([delivery(created())])
    assert isinstance(outcome, Unavailable)


async def test_a_payment_gateway_outage_defers_the_order_while_a_failed_call_spends_an_attempt():
    down, failed = uuid.uuid4(), uuid.uuid4()
    saga = DownSaga(
        orders={
            down: PaymentGatewayUnavailableError("503 Service Unavailable"),
            failed: PaymentGatewayError("the gateway rejected the request"),
        }
    )
    outcomes = await FulfilmentHandler(cast(Any, saga)).handle_batch(
        [delivery(created(down), attempt=5), delivery(created(failed)), delivery(created())]
    )
    assert isinstance(outcomes[0], Unavailable)
    assert isinstance(outcomes[1], Retry)
    assert outcomes[2] == Ack("confirmed")
