"""The broker topology of DESIGN.md §3, declared as data with derived names.

Every service applies the whole topology at start (idempotently), so an event published before
a consumer first starts is already routed to that consumer's queue.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import ChannelAccessRefused

from common.declared_settings import read_settings, setting
from common.observability import get_logger
from common.settings import Env

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "DEFAULT_SCHEDULER_DELAYS",
    "NOTIFIED_ROUTING_KEYS",
    "ConsumerQueue",
    "Topology",
    "TopologySettings",
    "apply_topology",
    "declare_for_publishing",
    "default_topology",
    "delay_label",
]

log = get_logger(__name__)

DEFAULT_RETRY_DELAYS: tuple[float, ...] = (1.0, 10.0, 60.0, 600.0)
# The order scheduler holds not-yet-due orders in these tiers; the smallest bounds how close to
# its time an order starts (half of it, docs/lifecycle.md), the largest how many hops a week takes.
DEFAULT_SCHEDULER_DELAYS: tuple[float, ...] = (0.25, 1.0, 10.0, 60.0, 600.0)
# The events the notification worker sends something for (its PRIMARY_KINDS; a unit test keeps
# the two equal). Binding only these spares the broker and the worker every other event: a
# third of what an order publishes (OrderPaid) was delivered, decoded and acked for nothing.
NOTIFIED_ROUTING_KEYS: tuple[str, ...] = (
    "order.created",
    "order.confirmed",
    "order.payment_failed",
    "order.rejected",
    "order.cancelled",
)
# What every consuming queue was once bound with; a queue whose bindings no longer include it
# loses it at the next start (bindings are additive, so declaring alone would keep it).
FORMER_DEFAULT_BINDING = "order.#"
# A poison message that crashes its consumer before any ack would otherwise be redelivered
# forever; quorum queues dead-letter it to the parking lot after this many redeliveries.
DELIVERY_LIMIT = 20


def delay_label(seconds: float) -> str:
    """1.0 -> '1s', 60 -> '1m', 0.25 -> '250ms': readable, unique per delay value."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"retry delay must be positive, got {seconds}")
    if millis % 60_000 == 0:
        return f"{millis // 60_000}m"
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis}ms"


@dataclass(frozen=True)
class ConsumerQueue:
    """One consuming service's work queue with its retry tiers and parking lot."""

    name: str
    bindings: tuple[str, ...] = ("order.#",)
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    queue_type: str = "quorum"
    # Replicas of each quorum queue when it is created (x-quorum-initial-group-size); None: the
    # broker's default. A cluster of three gives every queue three (RABBITMQ_QUORUM_GROUP_SIZE).
    quorum_group_size: int | None = None

    def _type_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {"x-queue-type": self.queue_type}
        if self.queue_type == "quorum" and self.quorum_group_size is not None:
            args["x-quorum-initial-group-size"] = self.quorum_group_size
        return args

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"

    def retry_queue(self, delay: float) -> str:
        return f"{self.name}.retry.{delay_label(delay)}"

    @property
    def retry_queues(self) -> tuple[str, ...]:
        return tuple(self.retry_queue(d) for d in self.retry_delays)

    def work_arguments(self) -> dict[str, Any]:
        args = self._type_arguments()
        if self.queue_type == "quorum":
            args.update(
                {
                    "x-delivery-limit": DELIVERY_LIMIT,
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.dlq,
                }
            )
        return args

    def retry_arguments(self, delay: float) -> dict[str, Any]:
        # Queue-level TTL: every message in a tier waits the same time, so none blocks another.
        args: dict[str, Any] = {
            **self._type_arguments(),
            "x-message-ttl": round(delay * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.name,
        }
        if self.queue_type == "quorum":
            # Without these, a quorum queue dead-letters at most once and may drop on the floor.
            args["x-dead-letter-strategy"] = "at-least-once"
            args["x-overflow"] = "reject-publish"
        return args

    def dlq_arguments(self) -> dict[str, Any]:
        return self._type_arguments()


@dataclass(frozen=True)
class Topology:
    exchange: str = "orders"
    exchange_type: str = "topic"
    queues: tuple[ConsumerQueue, ...] = field(default_factory=tuple)

    def queue(self, name: str) -> ConsumerQueue:
        for queue in self.queues:
            if queue.name == name:
                return queue
        raise KeyError(name)

    def only(self, name: str) -> Topology:
        """The exchange and one consumer's queues: what a consumer may declare with its
        least-privilege broker user (deploy/rabbitmq/generate_definitions.py)."""
        return Topology(self.exchange, self.exchange_type, (self.queue(name),))


def default_topology(
    exchange: str = "orders",
    analytics_queue: str = "analytics.orders",
    notifications_queue: str = "notifications.orders",
    analytics_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
    notification_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
    fulfilment_queue: str | None = None,
    scheduler_queue: str | None = None,
    fulfilment_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
    scheduler_delays: tuple[float, ...] = DEFAULT_SCHEDULER_DELAYS,
    quorum_group_size: int | None = None,
) -> Topology:
    """The order service's own queues default to names derived from the exchange
    (``orders.fulfilment``, ``orders.scheduler``), so a private exchange gets private queues."""
    return Topology(
        exchange=exchange,
        queues=(
            ConsumerQueue(
                analytics_queue, retry_delays=analytics_delays, quorum_group_size=quorum_group_size
            ),
            ConsumerQueue(
                notifications_queue,
                bindings=NOTIFIED_ROUTING_KEYS,
                retry_delays=notification_delays,
                quorum_group_size=quorum_group_size,
            ),
            # Fulfilment starts on OrderCreated only; the scheduler sees OrderScheduled only.
            ConsumerQueue(
                fulfilment_queue or f"{exchange}.fulfilment",
                bindings=("order.created",),
                retry_delays=fulfilment_delays,
                quorum_group_size=quorum_group_size,
            ),
            ConsumerQueue(
                scheduler_queue or f"{exchange}.scheduler",
                bindings=("order.scheduled",),
                retry_delays=scheduler_delays,
                quorum_group_size=quorum_group_size,
            ),
        ),
    )


async def apply_topology(channel: AbstractChannel, topology: Topology) -> None:
    """Declare the exchange, every work queue, retry tier and parking lot; safe to repeat."""
    exchange = await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType(topology.exchange_type), durable=True
    )
    for spec in topology.queues:
        work = await channel.declare_queue(spec.name, durable=True, arguments=spec.work_arguments())
        for key in spec.bindings:
            await work.bind(exchange, routing_key=key)
        if FORMER_DEFAULT_BINDING not in spec.bindings:
            await work.unbind(exchange, routing_key=FORMER_DEFAULT_BINDING)
        for delay in spec.retry_delays:
            await channel.declare_queue(
                spec.retry_queue(delay), durable=True, arguments=spec.retry_arguments(delay)
            )
        await channel.declare_queue(spec.dlq, durable=True, arguments=spec.dlq_arguments())


async def declare_for_publishing(connection: AbstractConnection, topology: Topology) -> None:
    """The whole topology when the broker user may declare it (local guest); with a
    least-privilege user only the exchange, the consumers' queues being preloaded from the
    definitions file (deploy/rabbitmq) and declared by each consumer."""
    setup = await connection.channel()
    try:
        await apply_topology(setup, topology)
    except ChannelAccessRefused as exc:
        log.warning("topology_queues_not_declared", reason=str(exc)[:200])
        setup = await connection.channel()
        await apply_topology(setup, Topology(topology.exchange, topology.exchange_type, ()))
    finally:
        with contextlib.suppress(Exception):
            await setup.close()


@dataclass(frozen=True)
class TopologySettings:
    """Read by every process, so they all declare the same topology (documented once)."""

    exchange: str = setting("ORDERS_EXCHANGE", "orders", "topic exchange", shared=True)
    analytics_queue: str = setting(
        "ANALYTICS_QUEUE",
        "analytics.orders",
        "analytics work queue (retry tiers and DLQ derive from it)",
        shared=True,
    )
    notifications_queue: str = setting(
        "NOTIFICATIONS_QUEUE", "notifications.orders", "notification work queue", shared=True
    )
    analytics_delays: tuple[float, ...] = setting(
        "ANALYTICS_RETRY_DELAYS",
        DEFAULT_RETRY_DELAYS,
        "analytics retry tiers, seconds",
        shared=True,
    )
    notification_delays: tuple[float, ...] = setting(
        "NOTIFICATION_RETRY_DELAYS",
        DEFAULT_RETRY_DELAYS,
        "notification retry tiers, seconds",
        shared=True,
    )
    # Empty: derived from the exchange ("<exchange>.fulfilment", "<exchange>.scheduler").
    fulfilment_queue: str = setting(
        "ORDER_FULFILMENT_QUEUE",
        "",
        "fulfilment work queue (bound `order.created`); unset: `<exchange>.fulfilment`",
        shared=True,
    )
    scheduler_queue: str = setting(
        "ORDER_SCHEDULER_QUEUE",
        "",
        "scheduled-order queue (bound `order.scheduled`); unset: `<exchange>.scheduler`",
        shared=True,
    )
    fulfilment_delays: tuple[float, ...] = setting(
        "ORDER_FULFILMENT_RETRY_DELAYS",
        DEFAULT_RETRY_DELAYS,
        "fulfilment retry tiers, seconds",
        shared=True,
    )
    scheduler_delays: tuple[float, ...] = setting(
        "ORDER_SCHEDULER_DELAYS",
        DEFAULT_SCHEDULER_DELAYS,
        "scheduled-order delay tiers, seconds",
        shared=True,
    )
    quorum_group_size: int | None = setting(
        "RABBITMQ_QUORUM_GROUP_SIZE",
        None,
        "replicas of each quorum queue when the topology creates it"
        " (`x-quorum-initial-group-size`); unset: the broker's default; 3 on a 3-node cluster."
        " Only applies to new queues",
        min_value=1,
        shared=True,
    )

    def __post_init__(self) -> None:
        if not self.fulfilment_queue:
            object.__setattr__(self, "fulfilment_queue", f"{self.exchange}.fulfilment")
        if not self.scheduler_queue:
            object.__setattr__(self, "scheduler_queue", f"{self.exchange}.scheduler")

    @classmethod
    def from_env(cls, env: Env) -> TopologySettings:
        return read_settings(cls, env)

    def topology(self) -> Topology:
        # The fields are default_topology's parameters, name for name.
        return default_topology(**dataclasses.asdict(self))
