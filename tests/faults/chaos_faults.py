"""The faults a randomized run picks from. Each one injects, first checks that it really happened
(the port refuses, the process is gone, the broker closed the connections, the database holds
writes), heals in a ``finally`` and returns its evidence.

Every process reaches RabbitMQ, MariaDB and Redis through a proxy of the run's own, so cutting
those is an outage for this run only. Faults that stop or lock the real, shared servers are in
the catalogue only when no other test run shares them (``real``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiomysql
import httpx

from common.testing import TcpProxy, wait_until
from tests.e2e.system import (
    ALL_SERVICES,
    RABBITMQ_MANAGEMENT_AUTH,
    RABBITMQ_MANAGEMENT_URL,
    RunningSystem,
)
from tests.faults import infra
from tests.faults.copies import EventTap
from tests.faults.long_outage import refused
from tests.faults.poison import poison_messages, publish_poison
from tests.faults.wiring import AMQP, MYSQL, REDIS
from tests.support.analytics_db import HOST, PORT, ROOT_PASSWORD, ROOT_USER

__all__ = ["Chaos", "catalogue"]


@dataclass
class Chaos:
    system: RunningSystem
    proxies: dict[str, TcpProxy]  # "amqp", "mysql", "redis"
    tap: EventTap
    database: str  # the run's own analytics database
    rng: random.Random
    worker_kills: int = 0
    poison_ids: set[str] = field(default_factory=set)
    poison_kinds: set[str] = field(default_factory=set)


async def _proxy_cut(c: Chaos, name: str, longest: float) -> dict[str, Any]:
    proxy, seconds = c.proxies[name], round(c.rng.uniform(0.5, longest), 2)
    await proxy.cut()
    try:
        assert await refused("127.0.0.1", proxy.port), f"{name} proxy still accepts"
        await asyncio.sleep(seconds)  # the outage itself
    finally:
        await proxy.restore()
    return {"seconds": seconds, "refused": True}


async def broker_outage(c: Chaos) -> dict[str, Any]:
    return await _proxy_cut(c, "amqp", 5)


async def database_outage(c: Chaos) -> dict[str, Any]:
    return await _proxy_cut(c, "mysql", 4)


async def redis_outage(c: Chaos) -> dict[str, Any]:
    return await _proxy_cut(c, "redis", 4)


async def broker_connection_kill(c: Chaos) -> dict[str, Any]:
    """The broker closes this run's connections (management API, per connection), as
    ``rabbitmqctl close_connection`` does: the clients see a forced close, not a lost socket."""
    proxy = c.proxies["amqp"]
    async with httpx.AsyncClient(
        base_url=RABBITMQ_MANAGEMENT_URL, auth=RABBITMQ_MANAGEMENT_AUTH, timeout=10
    ) as api:

        async def ours() -> list[str]:
            ports = set()
            for writer in list(proxy._writers):  # the proxy's sockets towards the broker
                peer = writer.get_extra_info("peername")
                if peer and peer[1] == AMQP[1]:
                    ports.add(writer.get_extra_info("sockname")[1])
            listed = (
                await api.get("/api/connections", params={"columns": "name,peer_port"})
            ).json()
            return [str(x["name"]) for x in listed if x.get("peer_port") in ports]

        names = await wait_until(ours, timeout=20, interval=0.5, message="the run's connections")
        closed = 0
        for name in names:
            response = await api.delete(
                f"/api/connections/{quote(name, safe='')}", headers={"X-Reason": "chaos"}
            )
            closed += response.status_code in (200, 204)
    assert closed > 0, f"the broker closed none of {names}"
    return {"closed": closed}


async def process_kill(c: Chaos) -> dict[str, Any]:
    name = c.rng.choice(ALL_SERVICES)
    proc = c.system.group.procs[name]
    down = round(c.rng.uniform(0.2, 3), 2)
    c.system.kill(name)
    try:
        assert proc.poll() == -9, f"{name} did not die of SIGKILL: {proc.poll()}"
        if name == "notifications":
            c.worker_kills += 1
        await asyncio.sleep(down)  # the time it stays dead
    finally:
        await c.system.start(name)  # the supervisor's restart
    return {"process": name, "down_seconds": down, "exit": -9}


async def duplicates(c: Chaos) -> dict[str, Any]:
    copies = c.rng.randint(1, 2)
    taken = await c.tap.republish(c.rng.randint(10, 40), copies=copies)
    assert taken > 0, "no event to publish again"
    return {"events": taken, "copies_each": copies}


async def poison(c: Chaos) -> dict[str, Any]:
    messages = poison_messages()
    await publish_poison(await c.tap.usable_channel(), c.system.topology.exchange, messages)
    c.poison_ids.update(m.message_id for m in messages)
    c.poison_kinds.update(m.kind for m in messages)
    return {"published": len(messages)}


async def _root() -> aiomysql.Connection:
    return await aiomysql.connect(
        host=HOST, port=PORT, user=ROOT_USER, password=ROOT_PASSWORD, autocommit=True
    )


async def database_stall(c: Chaos) -> dict[str, Any]:
    """FLUSH TABLES WITH READ LOCK on the real server: every write waits until it is released."""
    seconds = round(c.rng.uniform(0.5, 3), 2)
    holder = await _root()
    try:
        async with holder.cursor() as cur:
            await cur.execute("FLUSH TABLES WITH READ LOCK")
        probe = await _root()
        try:
            async with probe.cursor() as cur:
                await cur.execute("SET SESSION lock_wait_timeout = 1")
                with contextlib.suppress(aiomysql.OperationalError):
                    await cur.execute(f"CREATE TABLE `{c.database}`.chaos_probe (id INT)")
                    raise AssertionError("a write went through the global read lock")
        finally:
            probe.close()
        await asyncio.sleep(seconds)  # the stall itself
    finally:
        with contextlib.suppress(Exception):
            async with holder.cursor() as cur:
                await cur.execute("UNLOCK TABLES")
        holder.close()
    return {"seconds": seconds, "write_blocked": True}


def _real(fault: Callable[[], Any], port: int, longest: float) -> Fault:
    async def run(c: Chaos) -> dict[str, Any]:
        seconds = round(c.rng.uniform(1, longest), 2)
        async with fault():
            assert await refused("127.0.0.1", port), f"port {port} still accepts"
            await asyncio.sleep(seconds)  # the outage itself
        return {"seconds": seconds, "refused": True}

    return run


Fault = Callable[[Chaos], Awaitable[dict[str, Any]]]


def catalogue(real: bool) -> dict[str, tuple[int, Fault]]:
    """name -> (weight, fault). ``real``: also stop, restart or lock the shared servers."""
    faults: dict[str, tuple[int, Fault]] = {
        "broker_outage": (2, broker_outage),
        "broker_connection_kill": (2, broker_connection_kill),
        "process_sigkill": (3, process_kill),
        "database_outage": (2, database_outage),
        "redis_outage": (1, redis_outage),
        "duplicate_publish": (2, duplicates),
        "poison": (1, poison),
    }
    if real:
        faults.update(
            {
                "database_stall": (1, database_stall),
                "rabbitmq_stop_start": (1, _real(infra.rabbitmq_app_stopped, AMQP[1], 6)),
                "mariadb_stop_start": (1, _real(infra.mariadb_stopped, MYSQL[1], 6)),
                "redis_restart": (1, _real(infra.redis_stopped, REDIS[1], 4)),
            }
        )
    return faults
