"""The system on a 3-node RabbitMQ cluster with two replicas of every process: the node leading
the work queues and one replica of each process SIGKILLed under load (``make test-cluster``)."""

from __future__ import annotations

import pytest

from tests.cluster.cluster import RabbitCluster
from tests.cluster.scenario import ClusterSizes, node_and_replicas_killed

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

FULL = ClusterSizes(rate=30, duration=75, node_down=15, replica_down=3, warmup_orders=150)


async def test_the_leader_node_and_a_replica_of_each_process_killed_lose_and_double_nothing(
    rabbit_cluster: RabbitCluster,
) -> None:
    figures = await node_and_replicas_killed(rabbit_cluster, FULL)
    assert figures["lost"] == 0 and figures["doubled"] == 0, figures
