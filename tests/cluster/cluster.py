"""The 3-node RabbitMQ cluster of deploy/cluster/cluster.sh, driven from Python for tests."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NODES", "RabbitCluster", "cluster_env", "free_port_block", "wait_refused"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "cluster" / "cluster.sh"
NODES = (1, 2, 3)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(start: int = 5781, stop: int = 5990) -> int:
    """A base AMQP port whose 3 AMQP, 3 management (+10000), 3 distribution (+20000) and the
    CLI's distribution ports (+30000..) are all free: two runs side by side do not collide."""
    for base in range(start, stop, 3):
        ports = [base + i + off for i in range(3) for off in (0, 10000, 20000, 30000)]
        if all(_port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port block for the cluster")


@dataclass(frozen=True)
class QueueReplicas:
    leader: str
    members: tuple[str, ...]
    online: tuple[str, ...]


@dataclass
class RabbitCluster:
    """``await cluster.up()`` ... ``await cluster.down()``; nodes are numbered 1..3."""

    directory: Path
    name: str
    amqp_port: int
    vhost: str = "orderflow"
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {
            **os.environ,
            "CLUSTER_DIR": str(self.directory),
            "CLUSTER_NAME": self.name,
            "CLUSTER_AMQP_PORT": str(self.amqp_port),
            "CLUSTER_VHOST": self.vhost,
        }

    async def _run(self, *args: str, timeout: float = 300.0) -> str:
        proc = await asyncio.create_subprocess_exec(
            "bash",
            str(SCRIPT),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        if proc.returncode != 0:
            raise RuntimeError(
                f"cluster.sh {' '.join(args)} exited {proc.returncode}: "
                f"{err.decode(errors='replace')[-2000:]}"
            )
        return out.decode()

    def up(self) -> None:
        self._run_sync("up")

    def down(self) -> None:
        self._run_sync("down", timeout=120)

    def _run_sync(self, *args: str, timeout: float = 300.0) -> str:
        done = subprocess.run(
            ["bash", str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"cluster.sh {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}"
            )
        return done.stdout

    def port(self, node: int) -> int:
        return self.amqp_port + node - 1

    def node_name(self, node: int) -> str:
        return f"rabbit-{self.name}{node}@localhost"

    def node_number(self, node_name: str) -> int:
        for n in NODES:
            if self.node_name(n) == node_name:
                return n
        raise KeyError(node_name)

    def url(self, node: int, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port(node)}/{self.vhost}"

    @property
    def urls(self) -> str:
        """RABBITMQ_URL for a process: every node, comma-separated."""
        return ",".join(self.url(n) for n in NODES)

    def accepts(self, node: int) -> bool:
        """True while the node's AMQP port accepts a connection."""
        with socket.socket() as sock:
            sock.settimeout(1.0)
            try:
                sock.connect(("127.0.0.1", self.port(node)))
            except OSError:
                return False
        return True

    async def queues(self) -> dict[str, QueueReplicas]:
        """Queue name -> its leader, members and online members, as a live node sees it now."""
        out = await self._run("leaders", timeout=60)
        return {
            q["name"]: QueueReplicas(
                str(q.get("leader") or ""),
                tuple(q.get("members") or ()),
                tuple(q.get("online") or ()),
            )
            for q in json.loads(out)
        }

    def pid(self, node: int) -> int:
        return int((self.directory / f"n{node}" / "pid").read_text().strip())

    def kill(self, node: int) -> None:
        """SIGKILL the node's Erlang VM: a crash, no goodbye to its peers or clients."""
        subprocess.run(["kill", "-KILL", str(self.pid(node))], check=True)

    async def start(self, node: int) -> None:
        await self._run("start", str(node))

    def beam_processes(self) -> list[str]:
        """Command lines of any Erlang VM still running from this cluster's directory."""
        out = subprocess.run(["pgrep", "-af", "beam"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if str(self.directory) in line]


async def wait_refused(cluster: RabbitCluster, node: int, timeout: float = 15.0) -> None:
    """Until the node's port refuses connections: the fault really happened."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while cluster.accepts(node):
        if loop.time() > deadline:
            raise AssertionError(f"node {node} still accepts on {cluster.port(node)}")
        await asyncio.sleep(0.05)


def cluster_env(cluster: RabbitCluster, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What every process of the system needs to run on the cluster."""
    return {"RABBITMQ_URL": cluster.urls, "RABBITMQ_QUORUM_GROUP_SIZE": "3", **(extra or {})}
