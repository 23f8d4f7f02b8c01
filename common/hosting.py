"""One host for every process (issue 14): the order service, the analytics consumer and the
notification worker share one lifecycle.

Start: the process's supervised tasks start and HTTP is served at once (a consumer waiting for
the broker holds nothing up). Ready: only while every required dependency answers and every
supervised task runs (a consumer: started on the broker), each named in /health/ready
(DESIGN.md §4 rule 9). SIGTERM or SIGINT (common.serve): the host reports not ready, and the
process stops taking deliveries, drains and settles what it holds, flushes, closes its
connections and pools, and exits 0 (rule 4). A process that serves requests (an API) stops
accepting them and finishes those in flight first; a process whose HTTP only reports on its
work (``drain_first``: a consumer, the notification worker) drains first, so /metrics and
/health still answer while it does, and uvicorn stops after.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from common.http import health_handlers, metrics_handler
from common.loop_lag import LoopLagProbe
from common.observability import Metrics, get_logger
from common.supervision import Supervisor

__all__ = ["Host", "Hosted", "PoolsOnly"]

log = get_logger(__name__)

Check = Callable[[], Awaitable[bool]]


class Hosted(Protocol):
    """What a process gives its host."""

    async def start(self) -> None:
        """Start the supervised tasks and return at once (never wait for the broker)."""

    async def stop(self) -> None:
        """Stop taking deliveries, drain and settle what is in flight, flush, then close."""


class PoolsOnly:
    """A process with no long-running task (the analytics API): nothing to start, pools to
    close."""

    def __init__(self, close: Callable[[], Awaitable[None]]) -> None:
        self._close = close

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self._close()


class Host:
    """Runs ``hosted`` inside an ASGI app's lifespan, so the same code serves one process and
    each of uvicorn's worker processes, and answers readiness for it."""

    def __init__(
        self,
        name: str,
        hosted: Hosted,
        *,
        supervisors: Sequence[Supervisor],
        checks: Mapping[str, Check],
        required: Iterable[str] = (),
        tasks_required: bool = True,
        drain_first: bool = False,
    ) -> None:
        self.name = name
        self.drain_first = drain_first
        self._stopped: asyncio.Future[None] | None = None
        self._tasks_required = tasks_required
        self._hosted = hosted
        self._supervisors = tuple(supervisors)
        self._checks = dict(checks)
        self._required = frozenset(required)
        unknown = self._required - set(self._checks)
        if unknown:
            raise ValueError(f"required checks without a check: {sorted(unknown)}")
        self.stopping = False
        self._lag: LoopLagProbe | None = None

    def readiness(self) -> tuple[dict[str, Check], frozenset[str]]:
        """Every dependency check, then one per supervised task; every task is required unless
        the process was told its tasks only report (``tasks_required=False``)."""
        tasks: dict[str, Check] = {}
        for supervisor in self._supervisors:
            tasks.update({n: self._unless_stopping(c) for n, c in supervisor.checks().items()})
        clash = set(tasks) & set(self._checks)
        if clash:
            raise ValueError(f"a check and a task share a name: {sorted(clash)}")
        required = self._required | set(tasks) if self._tasks_required else self._required
        return {**self._checks, **tasks}, required

    def _unless_stopping(self, check: Check) -> Check:
        # Not ready from the moment the stop begins: a draining task takes no new work.
        async def ready() -> bool:
            return not self.stopping and await check()

        return ready

    def routes(self, metrics: Metrics) -> list[HTTPRouteHandler]:
        """/health/live, /health/ready and /metrics; the loop-lag probe (started with the host)
        reports to the same metrics."""
        self._lag = LoopLagProbe(metrics)
        checks, required = self.readiness()
        return [*health_handlers(checks, required=required), metrics_handler(metrics)]

    def app(self, metrics: Metrics, **litestar: Any) -> Litestar:
        """A minimal app: the host's routes (plus ``route_handlers``), run in its lifespan, with
        the host in ``app.state.host``."""
        handlers = [*litestar.pop("route_handlers", ()), *self.routes(metrics)]
        litestar.setdefault("openapi_config", None)
        app = Litestar(route_handlers=handlers, lifespan=[self.lifespan], debug=False, **litestar)
        app.state.host = self
        return app

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        self.stopping = False
        self._stopped = None
        if self._lag is not None:
            self._lag.start()
        await self._hosted.start()
        _freeze_startup_heap()
        log.info("host_started", process=self.name)

    async def stop(self) -> None:
        """Once per start: a drain begun on SIGTERM (``drain_first``) and the lifespan's
        shutdown after it wait for the same stop."""
        if self._stopped is None:
            self._stopped = asyncio.ensure_future(self._stop())
        await asyncio.shield(self._stopped)

    async def _stop(self) -> None:
        # Supervisors report every task not ready once their stop begins (rule 9 readiness).
        self.stopping = True
        log.info("host_stopping", process=self.name)
        await self._hosted.stop()
        if self._lag is not None:
            self._lag.stop()
        log.info("host_stopped", process=self.name)


def _freeze_startup_heap() -> None:
    """Keep what the process built to last (modules, app, pools, metadata) out of the cyclic
    collector's passes. Each full pass walked all of it: ~100 ms stalls, several times in ten
    seconds under load, in the POST tail (p99 at 300 orders/s 196-265 ms, 140-159 frozen).
    Once per process: a later host (tests build many) finds the heap already frozen."""
    if gc.get_freeze_count():
        return
    gc.collect()
    gc.freeze()
    log.info("startup_heap_frozen", objects=gc.get_freeze_count())
