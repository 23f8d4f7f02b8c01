"""Which queues the bench checks before it starts a system, and with whose broker user."""

from __future__ import annotations

from common.messaging.topology import TopologySettings
from loadtool.queue_guard import procfile_queues
from loadtool.system import ROOT, procfile_env


def test_every_work_queue_of_the_procfile_is_checked_with_its_consumers_own_user() -> None:
    env = procfile_env((ROOT / "Procfile").read_text())
    queues = procfile_queues(env, TopologySettings())
    assert queues == {
        env["order"]["RABBITMQ_URL"]: ["orders.fulfilment", "orders.scheduler"],
        env["analytics-consumer"]["RABBITMQ_URL"]: ["analytics.orders"],
        env["notifications"]["RABBITMQ_URL"]: ["notifications.orders"],
    }
    assert {url.split("//")[1].split(":")[0] for url in queues} == {
        "order-service",
        "analytics-service",
        "notification-worker",
    }
