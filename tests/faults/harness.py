"""What every fault scenario shares: a steady load from the load tool in the background, a way
to learn the fate of requests whose answer the fault swallowed, the end-to-end audit, and the
figures each scenario prints.

A request cut by a fault (a killed order service, a timeout) may or may not have created its
order. Every generated order carries an Idempotency-Key, so after the fault we send each one
again with the same key and body: a stored order answers with its original id (a replay), a
missing one is created now. Either way the final set of orders is known exactly, which is what
lets the audit demand exact totals rather than bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from loadtool.audit import AuditConfig, Auditor, AuditReport
from loadtool.generator import GeneratedOrder, GeneratorConfig, OrderGenerator
from loadtool.runner import AcceptedOrder, LoadConfig, LoadResult, run_load
from tests.e2e.system import RunningSystem

__all__ = [
    "RecordingGenerator",
    "ScenarioFigures",
    "SteadyLoad",
    "audit_and_report",
]


class RecordingGenerator(OrderGenerator):
    """The load tool's generator, keeping every order it handed out (with its key)."""

    def __init__(self, seed: int) -> None:
        super().__init__(GeneratorConfig(idempotency_keys=True), seed)
        self.generated: list[GeneratedOrder] = []

    def next(self) -> GeneratedOrder:
        order = super().next()
        self.generated.append(order)
        return order


@dataclass
class SteadyLoad:
    """Open-loop load at ``rate`` orders/s for ``duration`` s, started in the background."""

    url: str
    rate: float
    duration: float
    concurrency: int = 16
    # Idempotency keys come from the seeded generator: a fixed seed would reuse the keys (and so
    # replay the orders) of an earlier run, so every load gets a fresh one.
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(2**63))
    request_timeout: float = 15.0
    generator: RecordingGenerator = field(init=False)
    ticks: list[tuple[float, int, int]] = field(default_factory=list)  # (monotonic, ok, errors)
    _task: asyncio.Task[LoadResult] | None = None

    def __post_init__(self) -> None:
        self.generator = RecordingGenerator(self.seed)

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


async def settle_every_order(
    url: str, orders: list[GeneratedOrder], timeout: float = 60.0, concurrency: int = 16
) -> tuple[list[AcceptedOrder], int]:
    """Each generated order sent again with its own Idempotency-Key until it answers 201.

    Returns the exact set of orders that exist, and how many of them were created by this pass
    (their first request failed before committing).
    """
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
                return AcceptedOrder(response.json()["id"], order.total_amount, order.currency)
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
) -> tuple[ScenarioFigures, AuditReport]:
    """Settle every order by its key, audit, print the figures, assert the guarantees."""
    settled, created_now = await settle_every_order(system.order_url, load.generator.generated)
    first_ids = {o.order_id for o in result.accepted}
    settled_ids = [o.order_id for o in settled]
    assert first_ids <= set(settled_ids), "a replay by key answered a different order id"
    assert len(set(settled_ids)) == len(settled_ids), "two keys answered the same order"
    auditor.config = AuditConfig(
        analytics_url=auditor.config.analytics_url,
        notifications_url=auditor.config.notifications_url,
        timeout=audit_timeout,
        summary_timeout=15.0,
    )
    report = await auditor.run(settled, summary_before)
    # Exact revenue of these orders, per order: every one applied once with its exact amount.
    applied = await auditor.analytics_records([o.order_id for o in settled])
    revenue_applied = sum((r.total_amount or Decimal(0) for r in applied[0]), Decimal(0))
    revenue_accepted = sum((o.total_amount for o in settled), Decimal(0))
    figures = ScenarioFigures(
        name=name,
        sent=result.sent,
        accepted_first_try=len(result.accepted),
        settled_later=created_now,
        accepted=len(settled),
        lost=report.lost_count,
        doubled=report.doubled_count,
        notifications_missing=len(report.notifications_missing),
        revenue_difference={"applied_minus_accepted": revenue_applied - revenue_accepted},
        recovery_seconds=load.recovery_seconds(recovered_at) if recovered_at else None,
        drain_seconds=report.wait_seconds,
        statuses=dict(sorted(Counter(result.statuses).items())),
        errors=dict(result.errors),
        extra={"seed": load.seed, **(extra or {})},
    )
    print(figures.line())
    assert report.lost == [], f"lost orders: {report.lost[:10]}"
    assert report.doubled_count == 0, report.doubled[:10] + report.analytics_duplicates[:10]
    assert report.notifications_missing == [], report.notifications_missing[:10]
    assert report.amount_mismatches == [], report.amount_mismatches[:10]
    assert revenue_applied == revenue_accepted, (revenue_applied, revenue_accepted)
    # The summary is reported, not asserted: other test runs share analytics_db, and since the
    # order lifecycle (docs/lifecycle.md) declined payments leave the totals, so its delta is
    # no longer "every accepted order". Exactness is asserted per order above.
    assert report.summary_checked, report.notes
    if report.orders_difference or any(report.revenue_difference.values()):
        print(
            f"[fault:{name}] summary delta vs accepted (informational): orders "
            f"{report.summary_orders_delta} vs {len(settled)}, revenue {report.revenue_difference}"
        )
    return figures, report
    assert report.orders_difference == 0, (report.summary_orders_delta, len(settled))
    # Summary revenue counts only orders whose payment went through (docs/lifecycle.md: the
    # simulated gateway declines some), so its delta is reported, not held to the accepted sum;
    # exact revenue is asserted per order above.
    if any(report.revenue_difference.values()):
        print(f"[fault:{name}] summary revenue delta differs: {report.revenue_difference}")
    return figures, report


def new_auditor(system: RunningSystem) -> Auditor:
    return Auditor(
        AuditConfig(
            analytics_url=system.analytics_url,
            notifications_url=system.notifications_url,
            timeout=120,
        )
    )
