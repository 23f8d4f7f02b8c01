"""Topology names and arguments are derived from data."""

from __future__ import annotations

import pytest

from common.messaging.topology import ConsumerQueue, default_topology, delay_label


@pytest.mark.parametrize(
    ("seconds", "label"),
    [(1, "1s"), (10, "10s"), (60, "1m"), (600, "10m"), (0.2, "200ms"), (90, "90s")],
)
def test_delay_labels_are_readable_and_unique(seconds, label):
    assert delay_label(seconds) == label


def test_retry_tiers_dead_letter_back_to_their_work_queue_with_queue_level_ttl():
    queue = ConsumerQueue("analytics.orders", retry_delays=(1.0, 60.0))
    assert queue.retry_queues == ("analytics.orders.retry.1s", "analytics.orders.retry.1m")
    args = queue.retry_arguments(60.0)
    assert args["x-message-ttl"] == 60000
    assert args["x-dead-letter-exchange"] == ""
    assert args["x-dead-letter-routing-key"] == "analytics.orders"
    assert args["x-dead-letter-strategy"] == "at-least-once"


def test_work_queues_park_crash_loops_after_a_delivery_limit():
    args = ConsumerQueue("q").work_arguments()
    assert args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-routing-key"] == "q.dlq"
    assert args["x-delivery-limit"] > 0


def test_analytics_sees_every_order_event_and_notifications_the_ones_it_notifies_on():
    topology = default_topology()
    assert topology.exchange == "orders"
    services = [q for q in topology.queues if q.name.split(".")[0] != "orders"]
    assert [q.name for q in services] == ["analytics.orders", "notifications.orders"]
    assert topology.queue("analytics.orders").bindings == ("order.#",)
    assert "order.paid" not in topology.queue("notifications.orders").bindings
    assert "order.confirmed" in topology.queue("notifications.orders").bindings


def test_the_order_service_queues_see_only_the_events_they_act_on():
    topology = default_topology()
    assert topology.queue("orders.fulfilment").bindings == ("order.created",)
    scheduler = topology.queue("orders.scheduler")
    assert scheduler.bindings == ("order.scheduled",)
    assert min(scheduler.retry_delays) <= 0.25  # half of it bounds the start-time precision


def test_a_private_exchange_gets_private_order_service_queues():
    topology = default_topology(exchange="t-1.orders")
    names = [q.name for q in topology.queues]
    assert "t-1.orders.fulfilment" in names and "t-1.orders.scheduler" in names


def test_a_consumer_can_apply_only_the_exchange_and_its_own_queues() -> None:
    from common.messaging.topology import default_topology

    full = default_topology()
    own = full.only("notifications.orders")
    assert own.exchange == full.exchange
    assert [q.name for q in own.queues] == ["notifications.orders"]
