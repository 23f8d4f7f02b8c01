"""Fixtures for the analytics integration tests: a consumer and an API on the test's own
topology, a publisher of contract events, and direct reads of analytics_db."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from analytics_service.adapters.tables import order_facts
from analytics_service.app import create_app
from analytics_service.consumer import AnalyticsConsumer
from analytics_service.migrate import upgrade_to_head
from analytics_service.settings import AnalyticsSettings
from common.events import OrderCreatedV1, OutgoingEnvelope, encode_envelope, new_envelope
from common.messaging.publisher import ConfirmingPublisher, OutgoingMessage
from common.messaging.topology import TopologySettings, apply_topology
from common.observability import Metrics
from common.testing import unique_name, wait_until

DATABASE_URL = os.environ.get(
    "ANALYTICS_DATABASE_URL",
    "mysql+aiomysql://analytics_svc:analytics_svc_local@127.0.0.1:3306/analytics_db",
)
RABBITMQ_URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session", autouse=True)
def _migrated() -> None:
    upgrade_to_head(DATABASE_URL)


@pytest.fixture
def settings(cleanup_topology: TopologySettings) -> AnalyticsSettings:
    return AnalyticsSettings(
        database_url=DATABASE_URL,
        rabbitmq_url=RABBITMQ_URL,
        redis_url=REDIS_URL,
        topology=cleanup_topology,
        prefetch=400,
        batch_size=200,
        workers=2,
        max_attempts=5,
    )


ConsumerFactory = Callable[..., Awaitable[AnalyticsConsumer]]


@pytest.fixture
async def start_consumer(settings: AnalyticsSettings) -> AsyncIterator[ConsumerFactory]:
    """Starts consumers on the test topology (overrides go to the settings); stops them all."""
    started: list[AnalyticsConsumer] = []

    async def start(**overrides: Any) -> AnalyticsConsumer:
        consumer = AnalyticsConsumer(
            dataclasses.replace(settings, **overrides), Metrics("analytics_service")
        )
        await consumer.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        await consumer.stop()


@pytest.fixture
async def api(settings: AnalyticsSettings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings, configure_logs=False)) as client:
        yield client


class EventPublisher:
    """Publishes contract envelopes to the test's exchange, as the outbox relay does."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, exchange: str) -> None:
        self._publisher = ConfirmingPublisher(channel, exchange)

    async def publish(self, envelopes: Sequence[OutgoingEnvelope]) -> None:
        results = await self._publisher.publish_many(
            [
                OutgoingMessage(
                    body=encode_envelope(e),
                    routing_key=e.data.routing_key,
                    message_id=str(e.event_id),
                    event_type=e.event_type,
                    timestamp=e.occurred_at,
                    headers={"correlation_id": e.correlation_id},
                )
                for e in envelopes
            ]
        )
        assert all(r.ok for r in results), [r for r in results if not r.ok]

    async def publish_raw(
        self, body: bytes, *, routing_key: str = "order.created", event_type: str = "OrderCreated"
    ) -> str:
        message_id = str(uuid.uuid4())
        results = await self._publisher.publish_many(
            [
                OutgoingMessage(
                    body=body,
                    routing_key=routing_key,
                    message_id=message_id,
                    event_type=event_type,
                    timestamp=datetime.now(UTC),
                )
            ]
        )
        assert results[0].ok
        return message_id


@pytest.fixture
async def publisher(
    amqp: aio_pika.abc.AbstractRobustConnection, cleanup_topology: TopologySettings
) -> AsyncIterator[EventPublisher]:
    channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
    # Declared before any consumer starts, so nothing published by the test is unroutable.
    await apply_topology(channel, cleanup_topology.topology())
    yield EventPublisher(channel, cleanup_topology.exchange)
    with contextlib.suppress(Exception):
        await channel.close()


class OrderEnvelope(OutgoingEnvelope, kw_only=True):
    """An outgoing envelope whose data is known to be an OrderCreatedV1."""

    data: OrderCreatedV1


def order_event(
    *,
    customer_id: str | None = None,
    product_id: str | None = None,
    amount: str = "10.00",
    currency: str = "USD",
    quantity: int = 1,
    created_at: datetime | None = None,
) -> OrderEnvelope:
    created = created_at or datetime.now(UTC)
    data = OrderCreatedV1(
        order_id=uuid.uuid4(),
        customer_id=customer_id or unique_name("cust"),
        product_id=product_id or unique_name("prod"),
        quantity=quantity,
        total_amount=Decimal(amount),
        currency=currency,
        status="PENDING",
        created_at=created,
    )
    envelope = new_envelope(
        data, producer="analytics-tests", correlation_id=unique_name("corr"), occurred_at=created
    )
    return OrderEnvelope(**{f: getattr(envelope, f) for f in envelope.__struct_fields__})


class AnalyticsDb:
    """Direct reads of analytics_db, scoped to the rows a test created."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def fact_count(self, order_ids: Sequence[uuid.UUID]) -> int:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(order_facts.c.order_id).where(
                    order_facts.c.order_id.in_([str(i) for i in order_ids])
                )
            )
            return len(rows.all())

    async def totals(self, table: str, id_column: str, ids: Sequence[str]) -> dict[str, Any]:
        """{id: (order_count, revenue, quantity)} for the given ids, all currencies summed."""
        if not ids:
            return {}
        async with self.engine.connect() as conn:
            stmt = text(
                f"SELECT {id_column}, SUM(order_count), SUM(revenue), SUM(quantity) "
                f"FROM {table} WHERE {id_column} IN :ids GROUP BY {id_column}"
            ).bindparams(bindparam("ids", expanding=True))
            rows = await conn.execute(stmt, {"ids": list(ids)})
            return {r[0]: (int(r[1]), Decimal(r[2]), int(r[3])) for r in rows}

    async def wait_for_facts(self, order_ids: Sequence[uuid.UUID], timeout: float = 20) -> None:
        async def all_there() -> bool:
            return await self.fact_count(order_ids) == len(order_ids)

        await wait_until(
            all_there, timeout=timeout, interval=0.1, message=f"{len(order_ids)} facts applied"
        )


@pytest.fixture
async def db() -> AsyncIterator[AnalyticsDb]:
    engine = create_async_engine(DATABASE_URL, pool_size=2)
    yield AnalyticsDb(engine)
    await engine.dispose()


def consumed(consumer: AnalyticsConsumer, outcome: str, event_type: str = "OrderCreated") -> float:
    """analytics_service_events_consumed_total{event_type, outcome} of one consumer."""
    value = consumer.metrics.registry.get_sample_value(
        "analytics_service_events_consumed_total",
        {"event_type": event_type, "outcome": outcome},
    )
    return value or 0.0
