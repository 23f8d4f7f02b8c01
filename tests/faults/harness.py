"""What every fault scenario shares: a partition of its own (a fresh analytics database and a
webhook receiver), a steady load from the load tool in the background, a way to learn the fate
of requests whose answer the fault swallowed, the end-to-end audit, and the figures each
scenario prints.

The load mixes both write paths: every other order carries an Idempotency-Key, the rest none.
A keyed request cut by a fault is sent again with its key until it answers (a replay or a
late create). An unkeyed one cannot be replayed, so the auditor finds every order the run
committed by listing the run's own customers (GET /orders?customer_id=...) and matches each to
its request by its product, which is unique per request: each must be there at most once, and
exactly once when it was answered 201. The set of committed orders is then known exactly, and
the fresh analytics database holds nothing else, so the totals are asserted exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from loadtool.audit import AuditConfig, Auditor, AuditReport
from loadtool.generator import GeneratedOrder, GeneratorConfig, OrderGenerator
from loadtool.runner import AcceptedOrder, LoadConfig, LoadResult, run_load
from tests.e2e.system import RunningSystem
from tests.faults.sends import await_deliveries, check_sends
from tests.support.analytics_db import ANALYTICS_DB_URL, PORT, fresh_analytics_database
from tests.support.smtp_receiver import SmtpReceiver
from tests.support.webhook_receiver import WebhookReceiver

__all__ = [
    "Partition",
    "RecordingGenerator",
    "ScenarioFigures",
    "SteadyLoad",
    "audit_and_report",
    "partition",
    "send_probe",
]

CUSTOMERS_PER_RUN = 20


@dataclass
class Partition:
    """What one scenario run owns: its analytics database, its webhook and SMTP receivers,
    its ids."""

    database: str
    hook: WebhookReceiver
    mail: SmtpReceiver
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

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


async def settle_keyed_orders(
    url: str, orders: list[GeneratedOrder], timeout: float = 60.0, concurrency: int = 16
) -> tuple[list[AcceptedOrder], int]:
    """Each keyed order sent again with its own Idempotency-Key until it answers 201.

    Returns the exact set of keyed orders that exist, and how many of them were created by
    this pass (their first request failed before committing).
    """
    orders = [o for o in orders if o.idempotency_key is not None]
    semaphore = asyncio.Semaphore(concurrency)
    deadline = time.monotonic() + timeout
    created_now = 0

    async def settle(client: httpx.AsyncClient, order: GeneratedOrder) -> AcceptedOrder:
        nonlocal created_now
        assert order.idempotency_key is not None
        last = ""
        while time.monotonic() < deadline:
            async with semaphore:
                try:
                    response = await client.post(
                        "/orders",
                        content=order.body,
                        headers={
                            "content-type": "application/json",
                            "Idempotency-Key": order.idempotency_key,
                        },
                    )
                except httpx.HTTPError as exc:
                    last = repr(exc)
                    response = None
            if response is not None and response.status_code == 201:
                if response.headers.get("idempotent-replayed") != "true":
                    created_now += 1
                return _accepted(response.json()["id"], order)
            if response is not None:
                last = f"{response.status_code} {response.text[:200]}"
                assert response.status_code in (409, 503), last  # only "try again" answers
            await asyncio.sleep(0.2)
        raise AssertionError(f"order {order.idempotency_key} not settled in time: {last}")

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        settled = await asyncio.gather(*(settle(client, o) for o in orders))
    return list(settled), created_now


@dataclass
class ScenarioFigures:
    name: str
    sent: int = 0
    accepted_first_try: int = 0
    settled_later: int = 0
    accepted: int = 0
    lost: int = 0
    doubled: int = 0
    notifications_missing: int = 0
    revenue_difference: dict[str, Decimal] = field(default_factory=dict)
    recovery_seconds: float | None = None
    drain_seconds: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        recovery = "n/a" if self.recovery_seconds is None else f"{self.recovery_seconds:.2f}s"
        revenue = {k: str(v) for k, v in self.revenue_difference.items()}
        return (
            f"[fault:{self.name}] sent={self.sent} accepted={self.accepted} "
            f"(first try {self.accepted_first_try}, settled by key later {self.settled_later}) "
            f"lost={self.lost} doubled={self.doubled} "
            f"notifications_missing={self.notifications_missing} revenue_diff={revenue} "
            f"recovery={recovery} drain={self.drain_seconds:.2f}s statuses={self.statuses} "
            f"errors={self.errors}"
            + (f" {json.dumps(self.extra, default=str)}" if self.extra else "")
        )


def _accepted(order_id: str, order: GeneratedOrder) -> AcceptedOrder:
    return AcceptedOrder(
        order_id,
        order.total_amount,
        order.currency,
        order.customer_id,
        order.product_id,
        order.quantity,
    )


async def list_committed(url: str, customers: Sequence[str]) -> list[dict[str, Any]]:
    """Every order the order service holds for these customers (its own answer, paged)."""
    found: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for customer in customers:
            cursor: str | None = None
            while True:
                params = {"customer_id": customer, "limit": "100"}
                if cursor:
                    params["cursor"] = cursor
                response = await client.get("/orders", params=params)
                assert response.status_code == 200, response.text[:300]
                page = response.json()
                found.extend(page["items"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
    return found


@dataclass
class WritePaths:
    """Committed orders matched to the requests of both write paths."""

    orders: list[AcceptedOrder] = field(default_factory=list)  # every committed order, once
    unkeyed_sent: int = 0
    unkeyed_committed: int = 0
    unkeyed_committed_without_201: int = 0
    lost: list[str] = field(default_factory=list)  # answered 201 (or settled), not there
    doubled: list[str] = field(default_factory=list)  # one request, several orders
    phantom: list[str] = field(default_factory=list)  # an order no request asked for
    differ: list[str] = field(default_factory=list)  # an order unlike its request


def match_write_paths(
    generated: Sequence[GeneratedOrder],
    answered: Sequence[AcceptedOrder],
    settled: Sequence[AcceptedOrder],
    committed: Sequence[dict[str, Any]],
) -> WritePaths:
    """Pure: each request (its product is unique) against what the service committed."""
    out = WritePaths()
    by_product: dict[str, list[dict[str, Any]]] = {}
    for row in committed:
        by_product.setdefault(str(row["product_id"]), []).append(row)
    confirmed = {o.order_id for o in answered} | {o.order_id for o in settled}
    requested = set()
    for order in generated:
        assert order.product_id is not None
        requested.add(order.product_id)
        rows = by_product.get(order.product_id, [])
        if order.idempotency_key is None:
            out.unkeyed_sent += 1
            out.unkeyed_committed += min(len(rows), 1)
        if len(rows) > 1:
            out.doubled.append(f"{order.product_id}: {[r['id'] for r in rows]}")
        for row in rows:
            if row["id"] not in confirmed and order.idempotency_key is None:
                out.unkeyed_committed_without_201 += 1
            want = (str(order.total_amount), order.currency, order.customer_id, order.quantity)
            have = (
                str(Decimal(str(row["total_amount"])).quantize(order.total_amount)),
                row["currency"],
                row["customer_id"],
                row["quantity"],
            )
            if want != have:
                out.differ.append(f"{row['id']}: {have} != {want}")
            out.orders.append(_accepted(str(row["id"]), order))
    ids = {str(r["id"]) for r in committed}
    out.lost = sorted(oid for oid in confirmed if oid not in ids)
    out.phantom = sorted(str(r["id"]) for r in committed if str(r["product_id"]) not in requested)
    return out


async def send_probe(client: httpx.AsyncClient, load: SteadyLoad) -> httpx.Response:
    """One order of the run's own (recorded like the load's, so the audit accounts for it)."""
    order = load.generator.next()
    headers = {"content-type": "application/json"}
    if order.idempotency_key is not None:
        headers["Idempotency-Key"] = order.idempotency_key
    response = await client.post("/orders", content=order.body, headers=headers)
    if response.status_code == 201:
        load.side_accepted.append(_accepted(response.json()["id"], order))
    return response


async def audit_and_report(
    name: str,
    system: RunningSystem,
    load: SteadyLoad,
    result: LoadResult,
    auditor: Auditor,
    summary_before: Any,
    *,
    recovered_at: float | None = None,
    audit_timeout: float = 90.0,
    extra: dict[str, Any] | None = None,
    worker_kills: int = 0,
) -> tuple[ScenarioFigures, AuditReport]:
    """Settle keyed orders by key, find every committed order of both write paths, audit
    analytics (per order and a recount of every total) and the sends at the receiver, print
    the figures, assert the guarantees exactly."""
    part = load.part
    settled, created_now = await settle_keyed_orders(system.order_url, load.generator.generated)
    assert len({o.order_id for o in settled}) == len(settled), "two keys answered one order"
    committed = await list_committed(system.order_url, [*part.customers, part.probe_customer])
    paths = match_write_paths(
        load.generator.generated, [*result.accepted, *load.side_accepted], settled, committed
    )
    orders = paths.orders
    auditor.config = dataclasses.replace(
        auditor.config, timeout=audit_timeout, summary_timeout=20.0, notifications_url=None
    )
    report = await auditor.run(orders, summary_before)
    sends = await await_deliveries(auditor, part.hook, part.mail, orders, timeout=audit_timeout)
    applied, _ = await auditor.analytics_records([o.order_id for o in orders])
    revenue_applied = sum((r.total_amount or Decimal(0) for r in applied), Decimal(0))
    final_states = dict(sorted(Counter(str(r.status) for r in applied).items()))
    revenue_accepted = sum((o.total_amount for o in orders), Decimal(0))
    figures = ScenarioFigures(
        name=name,
        sent=result.sent,
        accepted_first_try=len(result.accepted),
        settled_later=created_now,
        accepted=len(orders),
        lost=report.lost_count + len(paths.lost),
        doubled=report.doubled_count
        + len(paths.doubled)
        + sum(len(v.doubled) for v in sends.channels.values()),
        notifications_missing=sum(len(v.missing) for v in sends.channels.values()),
        revenue_difference={"applied_minus_accepted": revenue_applied - revenue_accepted},
        recovery_seconds=load.recovery_seconds(recovered_at) if recovered_at else None,
        drain_seconds=report.wait_seconds,
        statuses=dict(sorted(Counter(result.statuses).items())),
        errors=dict(result.errors),
        extra={
            "seed": load.seed,
            "unkeyed": {
                "sent": paths.unkeyed_sent,
                "committed": paths.unkeyed_committed,
                "committed_without_201": paths.unkeyed_committed_without_201,
            },
            "facts_recounted": report.facts_read,
            "final_states": final_states,
            "expected_notifications": sends.channels["webhook"].expected,
            **{f"{n}_deliveries": v.delivered for n, v in sends.channels.items()},
            **{f"{n}_redelivered_same_key": len(v.redelivered) for n, v in sends.channels.items()},
            **(extra or {}),
        },
    )
    print(figures.line())
    # Both write paths: every request applied at most once, every 201 there.
    assert paths.lost == [], f"answered 201 but not committed: {paths.lost[:10]}"
    assert paths.doubled == [], f"one request, several orders: {paths.doubled[:10]}"
    assert paths.phantom == [], f"orders no request asked for: {paths.phantom[:10]}"
    assert paths.differ == [], paths.differ[:10]
    assert paths.unkeyed_sent > 0 and len(orders) > paths.unkeyed_committed > 0, paths
    # Analytics, per order.
    assert report.lost == [], f"lost orders: {report.lost[:10]}"
    assert report.doubled_count == 0, report.analytics_duplicates[:10]
    assert report.amount_mismatches == [], report.amount_mismatches[:10]
    assert revenue_applied == revenue_accepted, (revenue_applied, revenue_accepted)
    # Analytics totals: the stored aggregates and the API's answers equal the auditor's own
    # recount of the facts, and the facts are exactly the committed orders.
    assert report.recount_checked, report.notes
    assert report.facts_read == len(orders), (report.facts_read, len(orders))
    assert report.aggregate_mismatches == [], report.aggregate_mismatches[:10]
    assert report.api_mismatches == [], report.api_mismatches[:10]
    assert report.fact_mismatches == [], report.fact_mismatches[:10]
    assert report.unexpected_facts == [], report.unexpected_facts[:10]
    # The run's own database started empty: the summary is exactly the booked orders.
    assert report.summary_checked, report.notes
    assert report.orders_difference == 0, (report.summary_orders_delta, report.final_states)
    assert not any(report.revenue_difference.values()), report.revenue_difference
    # Sends, counted at the receivers: exactly one per expected notification and channel.
    check_sends(sends, worker_kills)
    assert part.hook.malformed == 0 and part.mail.malformed == 0
    return figures, report


def new_auditor(system: RunningSystem, part: Partition) -> Auditor:
    return Auditor(
        AuditConfig(
            analytics_url=system.analytics_url,
            notifications_url=None,  # sends are counted at the receiver, not in Redis
            timeout=120,
            analytics_database_url=part.analytics_url(),
            exclusive=True,
        )
    )
