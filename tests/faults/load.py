"""A fault run's own partition (a fresh analytics database, webhook and SMTP receivers, its own
customers and products) and its steady load: the load tool's generator in the background, every
other order without an Idempotency-Key, every order it handed out kept for the audit."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from loadtool.generator import GeneratedOrder, GeneratorConfig, OrderGenerator
from loadtool.runner import AcceptedOrder, LoadConfig, LoadResult, run_load
from tests.faults.write_paths import accepted_order
from tests.support.analytics_db import ANALYTICS_DB_URL, PORT, fresh_analytics_database
from tests.support.smtp_receiver import SmtpReceiver
from tests.support.webhook_receiver import WebhookReceiver

__all__ = ["Partition", "RecordingGenerator", "SteadyLoad", "partition", "send_probe"]

CUSTOMERS_PER_RUN = 20


@dataclass
class Partition:
    """What one scenario run owns: its analytics database, its webhook and SMTP receivers,
    its ids."""

    database: str
    hook: WebhookReceiver
    mail: SmtpReceiver
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def redis_db(self) -> int:
        # The summary cache's keys name this run's analytics database already; a Redis database
        # other than the shared 0 also keeps the run's order cache and sent-store records apart
        # from other systems'.
        return 1 + int(self.run_id, 16) % 15

    def redis_url(self, port: int = 6379) -> str:
        return f"redis://127.0.0.1:{port}/{self.redis_db}"

    def analytics_url(self, port: int = PORT) -> str:
        return ANALYTICS_DB_URL.format(port=port, database=self.database)

    @property
    def customer_prefix(self) -> str:
        return f"f{self.run_id}-c"

    @property
    def customers(self) -> list[str]:
        return [f"{self.customer_prefix}{n}" for n in range(1, CUSTOMERS_PER_RUN + 1)]

    @property
    def probe_customer(self) -> str:
        return f"f{self.run_id}-probe"

    def env(self, database_port: int = PORT) -> dict[str, str]:
        return {
            "ANALYTICS_DATABASE_URL": self.analytics_url(database_port),
            "REDIS_URL": self.redis_url(),
            "NOTIFY_CHANNELS": "log,webhook,smtp",
            "NOTIFY_WEBHOOK_URL": self.hook.url,
            "NOTIFY_WEBHOOK_SECRET": "fault-suite",
            **self.mail.env(),
        }


@asynccontextmanager
async def partition() -> AsyncIterator[Partition]:
    async with (
        fresh_analytics_database() as database,
        WebhookReceiver() as hook,
        SmtpReceiver() as mail,
    ):
        yield Partition(database, hook, mail)


class RecordingGenerator(OrderGenerator):
    """The load tool's generator on the run's own customers and one product per order; every
    other order without an Idempotency-Key. Keeps every order it handed out."""

    def __init__(self, seed: int, part: Partition) -> None:
        super().__init__(
            GeneratorConfig(
                idempotency_keys=True,
                min_customer=1,
                max_customer=CUSTOMERS_PER_RUN,
                customer_prefix=part.customer_prefix,
                product_prefix=f"f{part.run_id}-p",
                unique_products=True,
            ),
            seed,
        )
        self.generated: list[GeneratedOrder] = []

    def next(self) -> GeneratedOrder:
        order = super().next()
        if len(self.generated) % 2 == 1:
            order = dataclasses.replace(order, idempotency_key=None)
        self.generated.append(order)
        return order


@dataclass
class SteadyLoad:
    """Open-loop load at ``rate`` orders/s for ``duration`` s, started in the background."""

    url: str
    part: Partition
    rate: float
    duration: float
    concurrency: int = 16
    # Idempotency keys come from the seeded generator: a fixed seed would reuse the keys (and so
    # replay the orders) of an earlier run, so every load gets a fresh one.
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(2**63))
    request_timeout: float = 15.0
    generator: RecordingGenerator = field(init=False)
    # Orders the scenario itself sent through ``generator`` (probes) that were answered 201.
    side_accepted: list[AcceptedOrder] = field(default_factory=list)
    ticks: list[tuple[float, int, int]] = field(default_factory=list)  # (monotonic, ok, errors)
    _task: asyncio.Task[LoadResult] | None = None

    def __post_init__(self) -> None:
        self.generator = RecordingGenerator(self.seed, self.part)

    def start(self) -> SteadyLoad:
        config = LoadConfig(
            url=self.url,
            count=None,
            concurrency=self.concurrency,
            rate=self.rate,
            duration=self.duration,
            request_timeout=self.request_timeout,
        )

        def progress(result: LoadResult) -> None:
            self.ticks.append((time.monotonic(), len(result.accepted), result.error_count))

        self._task = asyncio.create_task(
            run_load(config, self.generator, on_progress=progress, progress_interval=0.1)
        )
        return self

    @property
    def accepted_so_far(self) -> int:
        return self.ticks[-1][1] if self.ticks else 0

    async def wait_accepted(self, count: int, timeout: float = 30.0) -> None:
        """Until the load has ``count`` orders accepted (a fault is injected mid-load)."""
        deadline = time.monotonic() + timeout
        while self.accepted_so_far < count:
            if self._task is not None and self._task.done():
                raise AssertionError(f"the load ended with {self.accepted_so_far} < {count}")
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.accepted_so_far} of {count} accepted in time")
            await asyncio.sleep(0.05)

    def recovery_seconds(self, since: float) -> float | None:
        """From ``since`` (the fault removed) to the first accepted order after it."""
        before = [ok for t, ok, _ in self.ticks if t <= since]
        base = before[-1] if before else 0
        for t, ok, _ in self.ticks:
            if t > since and ok > base:
                return t - since
        return None

    async def result(self) -> LoadResult:
        assert self._task is not None
        return await self._task

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def send_probe(client: httpx.AsyncClient, load: SteadyLoad) -> httpx.Response:
    """One order of the run's own (recorded like the load's, so the audit accounts for it)."""
    order = load.generator.next()
    headers = {"content-type": "application/json"}
    if order.idempotency_key is not None:
        headers["Idempotency-Key"] = order.idempotency_key
    response = await client.post("/orders", content=order.body, headers=headers)
    if response.status_code == 201:
        load.side_accepted.append(accepted_order(response.json()["id"], order))
    return response
