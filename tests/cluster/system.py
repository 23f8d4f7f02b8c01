"""The whole system with two replicas of every process (one analytics API), on the cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from common.messaging.connection import connect_any
from loadtool.processes import SERVICES, ProcessGroup, ServiceSpec, free_port
from tests.e2e.system import RunningSystem

__all__ = ["REPLICATED", "ReplicatedSystem"]

_BY_NAME = {s.name: s for s in SERVICES}
# Second replicas: the same command on a port of their own (the group env holds it under a name
# the service does not read; each replica's own env maps it to the real setting).
_SECOND = {
    "order-2": "order",
    "analytics-consumer-2": "analytics-consumer",
    "notifications-2": "notifications",
}
REPLICATED: tuple[str, ...] = (
    "order",
    "order-2",
    "analytics-api",
    "analytics-consumer",
    "analytics-consumer-2",
    "notifications",
    "notifications-2",
)


def _second(name: str, of: str) -> ServiceSpec:
    spec = _BY_NAME[of]
    return ServiceSpec(name, spec.args, f"REPLICA2_{spec.port_env}", spec.default_port)


class ReplicatedSystem(RunningSystem):
    """``RunningSystem`` (private topology, readiness waits, graceful stop checked) with the
    processes of ``REPLICATED``; every process gets ``env`` (the cluster's RABBITMQ_URL)."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        admin_url: str,
        retry_delays: str = "0.2,0.5",
        stop_timeout: float = 30.0,
    ) -> None:
        super().__init__(env=env, retry_delays=retry_delays, stop_timeout=stop_timeout)
        specs = [*SERVICES, *(_second(n, of) for n, of in _SECOND.items())]
        service_env = dict(self._service_env)
        for name, of in _SECOND.items():
            port = str(free_port())
            self.env[f"REPLICA2_{_BY_NAME[of].port_env}"] = port
            service_env[name] = {**service_env.get(of, {}), _BY_NAME[of].port_env: port}
        self.services = list(REPLICATED)
        self.group = ProcessGroup(self.env, services=tuple(specs), service_env=service_env)
        self.admin_url = admin_url

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.group.procs.items()}

    def running(self, name: str) -> bool:
        proc = self.group.procs.get(name)
        return proc is not None and proc.poll() is None

    async def delete_topology(self) -> None:
        """As the base class, through whichever cluster node answers."""
        with contextlib.suppress(Exception):
            connection = await connect_any(self.admin_url, timeout=10)
            try:
                channel = await connection.channel()
                topology = self.topology.topology()
                for spec in topology.queues:
                    for name in (spec.name, spec.dlq, *spec.retry_queues):
                        with contextlib.suppress(Exception):
                            await channel.queue_delete(name)
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(topology.exchange)
            finally:
                await connection.close()
