"""The common host around an order-service container, for either of its processes."""

from __future__ import annotations

from common.hosting import Host
from order_service.container import Container, Role

__all__ = ["order_host"]


def order_host(name: str, container: Container) -> Host:
    """Readiness of MySQL, Redis and the broker link, and of every supervised task.

    The API process requires only MySQL: its job is taking orders, and a broker outage only
    delays their events (DESIGN.md §4 rule 1), so a replica started during one must still get
    traffic; its tasks report, they do not gate. The fulfilment process's job is consuming: the
    broker and every consumer must be up for it to be ready."""
    api = container.role is Role.API
    return Host(
        name,
        container,
        supervisors=(container.supervisor, container.relay_supervisor),
        checks={
            "mysql": container.mysql_up,
            "redis": container.redis_up,
            "rabbitmq": container.rabbitmq_up,
        },
        required={"mysql"} if api else {"mysql", "rabbitmq"},
        tasks_required=not api,
        drain_first=not api,
    )
