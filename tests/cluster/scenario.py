"""A node of the cluster and a replica of every process killed under a steady load with the saga
on; then the fault suite's audit (tests/faults/harness.py): nothing lost, nothing doubled, every
order in a final state, and no process restarted by hand."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from common.testing import wait_until
from tests.cluster.balancer import RoundRobinBalancer
from tests.cluster.cluster import NODES, RabbitCluster, cluster_env, wait_refused
from tests.cluster.system import REPLICATED, ReplicatedSystem
from tests.faults.harness import (
    SteadyLoad,
    audit_and_report,
    new_auditor,
    partition,
)

__all__ = ["ClusterSizes", "node_and_replicas_killed"]

# One replica of each replicated process is killed; the other keeps going alone meanwhile.
KILLED_REPLICAS = ("order-2", "analytics-consumer-2", "notifications-2")
CONFIRM_SLOW_SECONDS = 1.0  # a relay batch (claim, publish, confirm, mark) slower than this


@dataclass(frozen=True)
class ClusterSizes:
    rate: float  # orders/s offered
    duration: float  # seconds of load
    node_down: float  # seconds the killed node stays down (under load)
    replica_down: float  # seconds the killed replicas stay down
    warmup_orders: int = 100


async def _metrics(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    """Every sample of a /metrics page, ``name{labels}`` -> value (empty if it does not answer)."""
    try:
        text = (await client.get(url + "/metrics")).text
    except httpx.HTTPError:
        return {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                samples[key] = float(value)
            except ValueError:
                continue
    return samples


def _sum(samples: dict[str, float], suffix: str, label: str = "") -> float:
    return sum(v for k, v in samples.items() if k.split("{")[0].endswith(suffix) and label in k)


async def scrape(system: ReplicatedSystem, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    async with httpx.AsyncClient(timeout=3) as client:
        pages = await asyncio.gather(*(_metrics(client, system.group.url(n)) for n in names))
    return dict(zip(names, pages, strict=True))


def delivery_figures(pages: dict[str, dict[str, float]]) -> Counter[str]:
    """Publish confirms delayed or failed (relays) and redeliveries absorbed (consumers)."""
    out: Counter[str] = Counter()
    for name, page in pages.items():
        if name.startswith("order"):
            out["confirm_failures"] += int(_sum(page, "_publish_confirm_failures_total"))
            batches = _sum(page, "_outbox_publish_batch_seconds_count")
            fast = _sum(
                page, "_outbox_publish_batch_seconds_bucket", f'le="{CONFIRM_SLOW_SECONDS}"'
            )
            out["relay_batches"] += int(batches)
            out["relay_batches_slower_than_1s"] += int(batches - fast)
        out["duplicates_absorbed"] += int(
            _sum(page, "_events_consumed_total", 'outcome="duplicate"')
        )
    return out


async def wait_every_process_ready(system: ReplicatedSystem, timeout: float = 90.0) -> float:
    """Seconds until every process answers ready (broker connected and consuming) again."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=2) as client:

        async def all_ready() -> bool:
            for name in REPLICATED:
                try:
                    response = await client.get(system.group.url(name) + "/health/ready")
                except httpx.HTTPError:
                    return False
                if response.status_code != 200:
                    return False
            return True

        await wait_until(all_ready, timeout=timeout, interval=0.1, message="every process ready")
    return time.monotonic() - started


async def wait_leaders(
    cluster: RabbitCluster, queues: list[str], dead: str, timeout: float = 60.0
) -> dict[str, str]:
    """Until every one of ``queues`` has a leader other than the ``dead`` node; the leaders."""

    async def elected() -> dict[str, str]:
        try:
            seen = await cluster.queues()
        except RuntimeError:
            return {}
        leaders = {q: seen[q].leader for q in queues if q in seen}
        if len(leaders) == len(queues) and all(v and v != dead for v in leaders.values()):
            return leaders
        return {}

    return await wait_until(elected, timeout=timeout, interval=0.1, message="new queue leaders")


async def node_and_replicas_killed(cluster: RabbitCluster, sizes: ClusterSizes) -> dict[str, Any]:
    env = cluster_env(cluster)
    async with partition() as part:
        env.update(part.env())
        system = ReplicatedSystem(env=env, admin_url=cluster.urls, stop_timeout=45)
        async with system:
            topology = system.topology.topology()
            work_queues = [q.name for q in topology.queues]
            queues = await cluster.queues()
            base = topology.exchange.removesuffix(".orders")
            mine = {n: q for n, q in queues.items() if n.startswith(base)}
            # Every queue of the run is replicated on all three nodes (RABBITMQ_QUORUM_GROUP_SIZE).
            assert mine and all(len(q.members) == 3 for q in mine.values()), mine
            pids_at_start = system.pids()
            auditor = new_auditor(system, part)
            figures: dict[str, Any] = {}
            try:
                before = await auditor.summary()
                assert before is not None and before.total_orders == 0, before
                # The load reaches both order services, one new connection each in turn.
                balancer = await RoundRobinBalancer(
                    [("127.0.0.1", _port(system.group.url(n))) for n in ("order", "order-2")]
                ).start()
                load = SteadyLoad(balancer.url, part, sizes.rate, sizes.duration).start()
                try:
                    await load.wait_accepted(sizes.warmup_orders, timeout=60)

                    # 1. The node leading the work queues dies.
                    leaders = Counter(queues[q].leader for q in work_queues)
                    leader_name = leaders.most_common(1)[0][0]
                    node = cluster.node_number(leader_name)
                    killed_at = time.monotonic()
                    at_kill = load.accepted_so_far
                    cluster.kill(node)
                    await wait_refused(cluster, node)
                    new = await wait_leaders(cluster, work_queues, leader_name)
                    figures["seconds_without_leader"] = round(time.monotonic() - killed_at, 2)
                    figures["new_leaders"] = sorted(set(new.values()))
                    await wait_every_process_ready(system)
                    figures["clients_back_seconds"] = round(time.monotonic() - killed_at, 2)
                    remaining = killed_at + sizes.node_down - time.monotonic()
                    await asyncio.sleep(max(0.0, remaining))  # the outage itself, not a sync
                    # From the kill to the restart: the API takes orders whatever the broker does.
                    figures["accepted_while_node_down"] = load.accepted_so_far - at_kill
                    figures["node_down_seconds"] = round(time.monotonic() - killed_at, 2)
                    assert figures["accepted_while_node_down"] > 0, "the API stopped accepting"
                    await cluster.start(node)
                    assert cluster.accepts(node)
                    healed = await wait_until(
                        lambda: _all_online(cluster, work_queues),
                        timeout=150,
                        interval=0.2,
                        message="the restarted node back in every queue",
                    )
                    figures["node_back_seconds"] = round(time.monotonic() - killed_at, 2)
                    assert healed
                    node_phase = await scrape(system, REPLICATED)

                    # 2. One replica of each process dies; the other replica carries on.
                    await load.wait_accepted(load.accepted_so_far + sizes.warmup_orders // 2)
                    replicas_killed_at = time.monotonic()
                    for name in KILLED_REPLICAS:
                        system.kill(name)
                        assert not system.running(name), f"{name} still runs after SIGKILL"
                    await asyncio.sleep(sizes.replica_down)  # the outage itself, not a sync
                    await asyncio.gather(*(system.start(n) for n in KILLED_REPLICAS))
                    await wait_every_process_ready(system)
                    # From the kill, with the replicas down for replica_down seconds.
                    figures["replicas_back_seconds"] = round(
                        time.monotonic() - replicas_killed_at, 2
                    )
                    result = await load.result()
                finally:
                    await load.cancel()
                    await balancer.close()
                figures["api_connections_per_order_replica"] = sorted(balancer.connections.values())
                end = await scrape(system, REPLICATED)
                totals = delivery_figures(end)
                # A killed replica's counters start again at 0: add what it counted before.
                totals.update(delivery_figures({n: node_phase[n] for n in KILLED_REPLICAS}))
                figures.update(totals)
                report_figures, _ = await audit_and_report(
                    "cluster_node_and_replicas_killed",
                    system,
                    load,
                    result,
                    auditor,
                    before,
                    audit_timeout=120,
                    extra={"cluster": figures},
                    worker_kills=1,
                )
            finally:
                await auditor.aclose()
            # Nobody restarted a process by hand: only the killed replicas have new pids.
            pids = system.pids()
            for name in REPLICATED:
                assert system.running(name), f"{name} is not running at the end"
                if name in KILLED_REPLICAS:
                    assert pids[name] != pids_at_start[name]
                else:
                    assert pids[name] == pids_at_start[name], f"{name} was restarted"
            summary = {
                "orders_accepted": report_figures.accepted,
                "lost": report_figures.lost,
                "doubled": report_figures.doubled,
                "seconds_without_leader": figures["seconds_without_leader"],
                "publish_confirms_delayed": {
                    "relay_batches_slower_than_1s": figures["relay_batches_slower_than_1s"],
                    "confirm_failures_republished": figures["confirm_failures"],
                    "relay_batches": figures["relay_batches"],
                },
                "redeliveries": {
                    "duplicates_absorbed_by_consumers": figures["duplicates_absorbed"],
                    "webhook_sends_repeated_same_key": report_figures.extra[
                        "webhook_redelivered_same_key"
                    ],
                },
                "final_states": report_figures.extra["final_states"],
                **{k: v for k, v in figures.items() if k not in totals},
            }
            print("[cluster] " + json.dumps(summary, default=str))
            return summary


async def _all_online(cluster: RabbitCluster, queues: list[str]) -> bool:
    try:
        seen = await cluster.queues()
    except RuntimeError:
        return False
    return all(q in seen and len(seen[q].online) == len(NODES) for q in queues)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
