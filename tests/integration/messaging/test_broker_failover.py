"""A list of broker nodes against the real RabbitMQ, each "node" a proxy in front of it: a process
connects to the first that answers, and when its node goes away its robust connection moves to
the next one, where publisher confirms and the consumer carry on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aio_pika
import pytest
from yarl import URL

from common.messaging.connection import FailoverRobustConnection, connect_robust_forever
from common.testing import TcpProxy, unique_name, wait_until
from tests.conftest import RABBITMQ_URL

pytestmark = pytest.mark.integration


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def via(port: int) -> str:
    """RABBITMQ_URL's credentials and vhost, through another port of 127.0.0.1."""
    url = URL(RABBITMQ_URL)
    return str(url.with_host("127.0.0.1").with_port(port))


@pytest.fixture
async def two_nodes() -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    url = URL(RABBITMQ_URL)
    target = (url.host or "127.0.0.1", url.port or 5672)
    first, second = await TcpProxy(*target).start(), await TcpProxy(*target).start()
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


async def test_a_process_connects_to_the_first_node_of_the_list_that_answers(
    two_nodes: tuple[TcpProxy, TcpProxy],
) -> None:
    _, live = two_nodes
    connection = await connect_robust_forever(
        f"{via(closed_port())},{via(live.port)}", client_name="failover-test"
    )
    try:
        assert connection.url.port == live.port
    finally:
        await connection.close()


async def test_when_its_node_dies_the_connection_moves_on_and_confirms_and_consumes_there(
    two_nodes: tuple[TcpProxy, TcpProxy],
) -> None:
    first, second = two_nodes
    connection = await connect_robust_forever(
        f"{via(first.port)},{via(second.port)}", client_name="failover-test"
    )
    assert isinstance(connection, FailoverRobustConnection)
    queue_name = unique_name("failover")
    received: asyncio.Queue[bytes] = asyncio.Queue()
    try:
        assert connection.url.port == first.port
        publisher = await connection.channel(publisher_confirms=True)
        consumer = await connection.channel()
        queue = await consumer.declare_queue(
            queue_name, durable=True, arguments={"x-queue-type": "quorum"}
        )

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await received.put(message.body)
            await message.ack()

        await queue.consume(on_message)
        await publisher.default_exchange.publish(aio_pika.Message(b"before"), queue_name)
        assert await asyncio.wait_for(received.get(), 10) == b"before"

        await first.cut()  # the node dies and stays dead

        async def moved() -> bool:
            return connection.url.port == second.port and connection.connected.is_set()

        await wait_until(moved, timeout=15, interval=0.05, message="reconnected to the second")
        # The restored confirm channel and consumer work on the new node.
        confirm = await wait_until(
            lambda: _publish(publisher, queue_name, b"after"), timeout=15, interval=0.1
        )
        assert confirm
        assert await asyncio.wait_for(received.get(), 10) == b"after"
        assert connection.rotation.switches == 1
    finally:
        channel = await connection.channel()
        await channel.queue_delete(queue_name)
        await connection.close()


async def _publish(channel: aio_pika.abc.AbstractChannel, queue: str, body: bytes) -> bool:
    """True once the broker confirmed it (the channel may still be restoring)."""
    try:
        await channel.default_exchange.publish(aio_pika.Message(body), queue, timeout=5)
    except (aio_pika.exceptions.AMQPError, RuntimeError):
        return False
    return True
