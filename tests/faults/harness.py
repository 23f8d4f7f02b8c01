"""What every fault scenario ends with: the end-to-end audit and the figures it prints. The
partition and the load are in tests/faults/load.py, the write paths in write_paths.py, the sends
in sends.py (re-exported here for the scenarios).

The load mixes both write paths: every other order carries an Idempotency-Key, the rest none.
A keyed request cut by a fault is sent again with its key until it answers (a replay or a
late create). An unkeyed one cannot be replayed, so the auditor finds every order the run
committed by listing the run's own customers (GET /orders?customer_id=...) and matches each to
its request by its product, which is unique per request: each must be there at most once, and
exactly once when it was answered 201. The set of committed orders is then known exactly, and
the fresh analytics database holds nothing else, so the totals are asserted exactly.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from loadtool.audit import AuditConfig, Auditor, AuditReport
from loadtool.runner import LoadResult
from tests.e2e.system import RunningSystem
from tests.faults.load import Partition, RecordingGenerator, SteadyLoad, partition, send_probe
from tests.faults.sends import await_deliveries, check_sends
from tests.faults.write_paths import list_committed, match_write_paths, settle_keyed_orders

__all__ = [
    "Partition",
    "RecordingGenerator",
    "ScenarioFigures",
    "SteadyLoad",
    "audit_and_report",
    "partition",
    "send_probe",
]


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
    # The backlog a long run leaves is drained at the notification worker's pace (about 100
    # orders/s on the 2-core machine, three channels): the wait grows with the orders, bounded.
    audit_timeout = max(audit_timeout, len(orders) / 40)
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
