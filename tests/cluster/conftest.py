"""A 3-node RabbitMQ cluster (deploy/cluster/cluster.sh) for the tests of this package: one per
session, on free ports and with node names of its own, torn down afterwards with nothing left
running (the machine's own node on 5672 is never touched)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.cluster import RabbitCluster, free_port_block


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    directory = Path(tempfile.mkdtemp(prefix="orderflow-cluster-"))
    cluster = RabbitCluster(directory, name=f"t{os.getpid()}n", amqp_port=free_port_block())
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()
        left = cluster.beam_processes()
        assert not left, f"cluster nodes still running after teardown: {left}"
