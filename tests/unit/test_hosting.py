"""The common host (issue 14): a process is ready only while every supervised consumer task
runs and consumes, not from the moment its stop begins, and its stop drains the consumers
before anything closes."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

import pytest
from litestar import Litestar

from analytics_service.app import create_app as create_analytics_api_app
from analytics_service.consumer import create_consumer_app
from analytics_service.settings import AnalyticsSettings
from common.hosting import Host
from common.observability import Metrics
from common.supervision import Supervisor
from common.testing import unique_name, wait_until
from common.testing_http import serve_app
from notification_worker.bootstrap import create_worker_app
from notification_worker.settings import NotificationSettings
from order_service.app import create_app as create_order_app
from order_service.fulfilment_app import create_fulfilment_app
from order_service.settings import OrderSettings


def _metrics() -> Metrics:
    return Metrics(unique_name("host").replace("-", "_"))


class FakeConsumer:
    """A consumer task: connects when the broker lets it, consumes until drained or killed."""

    def __init__(self) -> None:
        self.consuming = False
        self.broker_up = asyncio.Event()
        self.broker_up.set()
        self.drain_started = asyncio.Event()
        self.finish_drain = asyncio.Event()
        self.finish_drain.set()
        self._drained = asyncio.Event()
        self._killed = asyncio.Event()

    async def run(self) -> None:
        await self.broker_up.wait()
        self.consuming = True
        drained = asyncio.create_task(self._drained.wait())
        killed = asyncio.create_task(self._killed.wait())
        try:
            await asyncio.wait({drained, killed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.consuming = False
            drained.cancel()
            killed.cancel()
        if self._killed.is_set():
            self._killed.clear()
            raise ConnectionError("CHANNEL_ERROR: the consumer's channel closed")

    async def drain(self) -> None:
        self.drain_started.set()
        await self.finish_drain.wait()
        self._drained.set()

    def kill(self) -> None:
        self._killed.set()


class FakeProcess:
    """Consumer tasks and one plain task under a supervisor; records the steps of its stop."""

    def __init__(self, *names: str) -> None:
        self.supervisor = Supervisor(_metrics(), initial_backoff=0.5)
        self.consumers = {name: FakeConsumer() for name in names}
        self.steps: list[str] = []
        for name, consumer in self.consumers.items():
            self.supervisor.add(
                name, consumer.run, healthy=_consuming(consumer), stop=consumer.drain
            )
        self.supervisor.add("gauge", asyncio.Event().wait)

    async def start(self) -> None:
        self.supervisor.start()

    async def stop(self) -> None:
        await self.supervisor.stop(timeout=5)
        self.steps += ["drained", "closed"]


def _consuming(consumer: FakeConsumer) -> Callable[[], bool]:
    return lambda: consumer.consuming


async def _up() -> bool:
    return True


def hosted(*names: str) -> tuple[Host, FakeProcess]:
    process = FakeProcess(*names)
    host = Host(
        "test",
        process,
        supervisors=(process.supervisor,),
        checks={"broker": _up},
        required={"broker"},
    )
    return host, process


async def readiness(client) -> tuple[int, dict[str, str]]:
    answer = await client.get("/health/ready")
    return answer.status_code, answer.json()["checks"]


async def test_a_consumer_task_that_dies_makes_the_process_not_ready_naming_it_until_it_consumes():
    host, process = hosted("consumer:a", "consumer:b")
    async with serve_app(host.app(_metrics())) as client:

        async def ready() -> bool:
            return (await readiness(client))[0] == 200

        await wait_until(ready, timeout=5, message="ready")
        process.consumers["consumer:a"].kill()

        async def named_down() -> bool:
            status, checks = await readiness(client)
            return status == 503 and checks["consumer:a"] == "down"

        await wait_until(named_down, timeout=5, message="readiness naming the dead consumer")
        assert (await readiness(client))[1]["consumer:b"] == "up"
        await wait_until(ready, timeout=5, message="ready once the restarted consumer consumes")


async def test_a_consumer_task_still_waiting_for_the_broker_is_not_ready():
    host, process = hosted("consumer:a")
    process.consumers["consumer:a"].broker_up.clear()
    async with serve_app(host.app(_metrics())) as client:
        status, checks = await readiness(client)
        assert (status, checks["consumer:a"], checks["gauge"]) == (503, "down", "up")
        process.consumers["consumer:a"].broker_up.set()

        async def ready() -> bool:
            return (await readiness(client))[0] == 200

        await wait_until(ready, timeout=5, message="ready once it consumes")


async def test_a_process_whose_tasks_are_not_running_is_not_ready():
    host, _ = hosted("consumer:a")
    checks, required = host.readiness()
    assert {"broker", "consumer:a", "gauge"} <= required
    assert [await checks["consumer:a"](), await checks["gauge"]()] == [False, False]


async def test_the_stop_makes_the_process_not_ready_at_once_and_drains_before_it_closes():
    host, process = hosted("consumer:a")
    consumer = process.consumers["consumer:a"]
    checks, _ = host.readiness()
    await host.start()
    await wait_until(checks["consumer:a"], timeout=5, message="consuming")
    consumer.finish_drain.clear()  # a delivery still settling
    stopping = asyncio.create_task(host.stop())
    await wait_until(
        lambda: asyncio.sleep(0, consumer.drain_started.is_set()), timeout=5, message="drain"
    )
    assert not await checks["consumer:a"]()
    assert not await checks["gauge"]()
    assert process.steps == []  # nothing closed while the delivery settles
    consumer.finish_drain.set()
    await asyncio.wait_for(stopping, 5)
    assert process.steps == ["drained", "closed"]


PROCESSES: dict[str, tuple[Callable[[], Litestar], set[str], bool]] = {
    # The order service's tasks report without gating: it takes orders through a broker outage.
    "order service": (
        lambda: create_order_app(OrderSettings(), configure_logs=False),
        {
            "consumer:orders.fulfilment",
            "consumer:orders.scheduler",
            "outbox-relay",
            "outbox-backlog",
        },
        False,
    ),
    "analytics consumer": (
        lambda: create_consumer_app(AnalyticsSettings(), configure_logs=False),
        {"consumer:analytics.orders", "analytics-inbox-pruner"},
        True,
    ),
    "notification worker": (
        lambda: create_worker_app(NotificationSettings(), configure_logs=False),
        {"consumer:notifications.orders", "scheduled-gauge"},
        True,
    ),
}


@pytest.mark.parametrize("process", PROCESSES)
async def test_each_process_names_every_supervised_task_in_readiness(process):
    make_app, tasks, gating = PROCESSES[process]
    host: Host = make_app().state.host
    checks, required = host.readiness()
    assert tasks <= set(checks)
    assert {n for n in checks if n.startswith("consumer:")} == {
        n for n in tasks if n.startswith("consumer:")
    }
    if gating:
        assert tasks <= required
    else:
        assert not tasks & required
    # Not started: no task runs, so each reports not ready.
    assert [await checks[n]() for n in sorted(tasks)] == [False] * len(tasks)


async def test_a_started_host_freezes_the_heap_it_was_built_with():
    # What the process built to last stays out of the collector's full passes (~100 ms each).
    gc.unfreeze()
    host, _ = hosted("consumer:orders")
    built = object.__new__(FakeConsumer)  # an object that exists before the start
    await host.start()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.is_tracked(built)
        assert not any(o is built for o in gc.get_objects())  # in the frozen generation
    finally:
        await host.stop()


@pytest.mark.parametrize("process", PROCESSES)
def test_only_processes_whose_http_reports_on_their_work_drain_before_it_stops(process):
    make_app, _, gating = PROCESSES[process]
    assert make_app().state.host.drain_first is gating


def test_the_fulfilment_process_drains_before_its_http_stops_and_the_analytics_api_does_not():
    fulfilment = create_fulfilment_app(OrderSettings(), configure_logs=False)
    assert fulfilment.state.host.drain_first is True
    api = create_analytics_api_app(AnalyticsSettings(), configure_logs=False)
    assert api.state.host.drain_first is False


async def test_a_stop_begun_on_a_signal_and_the_lifespans_stop_are_one_stop():
    host, process = hosted("consumer:a")
    await host.start()
    first = asyncio.create_task(host.stop())
    second = asyncio.create_task(host.stop())
    await asyncio.wait_for(asyncio.gather(first, second), 10)
    await host.stop()
    assert process.steps == ["drained", "closed"]
