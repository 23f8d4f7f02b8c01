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


def test_default_topology_has_both_consumers_bound_to_every_order_event():
    topology = default_topology()
    assert topology.exchange == "orders"
    assert [q.name for q in topology.queues] == ["analytics.orders", "notifications.orders"]
    assert all(q.bindings == ("order.#",) for q in topology.queues)
