"""Least privilege on the real servers: each service's MySQL user reaches only its own database,
and each service's RabbitMQ user (vhost ``orderflow``, from deploy/rabbitmq/definitions.json,
created by deploy/local-infra.sh) touches only its own exchange and queues."""

from __future__ import annotations

import os

import aio_pika
import aiomysql
import pytest
from aiormq.exceptions import ChannelAccessRefused

from common.messaging.topology import TopologySettings

pytestmark = pytest.mark.integration

HOST = os.environ.get("MYSQL_HOST", "127.0.0.1")
ORDER_DB = ("order_svc", "order_svc_local", "order_db")
ANALYTICS_DB = ("analytics_svc", "analytics_svc_local", "analytics_db")
BROKER = "amqp://{user}:{password}@127.0.0.1:5672/orderflow"
ORDER_SERVICE = BROKER.format(user="order-service", password="order-service-local")
ANALYTICS = BROKER.format(user="analytics-service", password="analytics-service-local")
NOTIFICATIONS = BROKER.format(user="notification-worker", password="notification-worker-local")
TOPOLOGY = TopologySettings()
ACCESS_DENIED = {1044, 1045, 1142, 1143}  # db access, login, table access, column access


async def _query(user: str, password: str, db: str | None, sql: str) -> None:
    conn = await aiomysql.connect(
        host=HOST, port=3306, user=user, password=password, db=db, connect_timeout=3
    )
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
            await cur.fetchall()
    finally:
        conn.close()


async def _denied(user: str, password: str, db: str | None, sql: str) -> int:
    with pytest.raises(aiomysql.OperationalError) as info:
        await _query(user, password, db, sql)
    return int(info.value.args[0])


async def test_the_analytics_db_user_cannot_read_the_order_database() -> None:
    user, password, own = ANALYTICS_DB
    await _query(user, password, own, "SELECT 1")  # control: its own database works
    assert await _denied(user, password, own, "SELECT * FROM order_db.orders LIMIT 1") in (
        ACCESS_DENIED
    )
    assert await _denied(user, password, "order_db", "SELECT 1") in ACCESS_DENIED


async def test_the_order_db_user_cannot_read_the_analytics_database() -> None:
    user, password, own = ORDER_DB
    await _query(user, password, own, "SELECT 1")
    assert await _denied(user, password, own, "SELECT * FROM analytics_db.facts LIMIT 1") in (
        ACCESS_DENIED
    )
    assert await _denied(user, password, "analytics_db", "SELECT 1") in ACCESS_DENIED


async def test_service_db_users_hold_no_global_privileges() -> None:
    for user, password, own in (ORDER_DB, ANALYTICS_DB):
        conn = await aiomysql.connect(
            host=HOST, port=3306, user=user, password=password, db=own, connect_timeout=3
        )
        try:
            async with conn.cursor() as cur:
                await cur.execute("SHOW GRANTS")
                grants = [row[0] for row in await cur.fetchall()]
        finally:
            conn.close()
        assert all("ON *.*" not in g or "USAGE" in g for g in grants), grants
        assert any(f"`{own}`.*" in g for g in grants), grants


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


async def _refused(url: str, action) -> None:
    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        with pytest.raises(ChannelAccessRefused):
            await action(channel)
    finally:
        await connection.close()


@pytest.mark.parametrize("queue", [TOPOLOGY.analytics_queue, TOPOLOGY.notifications_queue])
async def test_the_order_service_broker_user_cannot_consume_a_consumers_queue(queue: str) -> None:
    async def consume(channel: aio_pika.abc.AbstractChannel) -> None:
        q = await channel.get_queue(queue, ensure=False)
        await q.consume(_ignore)

    async def get(channel: aio_pika.abc.AbstractChannel) -> None:
        q = await channel.get_queue(queue, ensure=False)
        await q.get(fail=False)

    await _refused(ORDER_SERVICE, consume)
    await _refused(ORDER_SERVICE, get)


async def test_the_order_service_broker_user_can_publish_to_the_orders_exchange() -> None:
    connection = await aio_pika.connect(ORDER_SERVICE, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange(
            TOPOLOGY.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        # An unknown event type: every consumer acks and ignores it (nothing to clean up).
        await exchange.publish(
            aio_pika.Message(b"{}", type="LeastPrivilegeProbe"), routing_key="order.probe"
        )
    finally:
        await connection.close()


async def test_a_consumer_broker_user_cannot_touch_the_other_consumers_queues() -> None:
    async def consume_other(channel: aio_pika.abc.AbstractChannel) -> None:
        q = await channel.get_queue(TOPOLOGY.notifications_queue, ensure=False)
        await q.consume(_ignore)

    async def purge_other_dlq(channel: aio_pika.abc.AbstractChannel) -> None:
        q = await channel.get_queue(f"{TOPOLOGY.analytics_queue}.dlq", ensure=False)
        await q.purge()

    async def publish_to_exchange(channel: aio_pika.abc.AbstractChannel) -> None:
        # Consumers may not publish events: only the order service writes to `orders`.
        exchange = await channel.get_exchange(TOPOLOGY.exchange, ensure=False)
        await exchange.publish(aio_pika.Message(b"{}"), routing_key="order.created")

    await _refused(ANALYTICS, consume_other)
    await _refused(NOTIFICATIONS, purge_other_dlq)
    await _refused(ANALYTICS, publish_to_exchange)
