"""End-to-end audit: did every accepted order reach analytics once and each notification
channel once, and do the analytics totals move by exactly what was accepted?

The collection (HTTP polling with a deadline) is separate from the verdict (``evaluate``, pure),
so the rules are unit-tested without any service.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from loadtool.analytics_db import AnalyticsSnapshot, read_snapshot
from loadtool.recount import (
    AcceptedFacts,
    Mismatch,
    Totals,
    compare_facts,
    compare_revenue,
    compare_summary,
    compare_tables,
    compare_top,
    hour_key,
    recount,
)
from loadtool.runner import AcceptedOrder
from loadtool.stats import LatencySummary, summarize

__all__ = [
    "ALL_CURRENCIES",
    "SAGA_FINAL_STATES",
    "AnalyticsRecord",
    "AuditConfig",
    "AuditReport",
    "Auditor",
    "DeliveryVerdict",
    "ReadOuts",
    "RecountVerdict",
    "Summary",
    "evaluate",
    "expected_notifications",
    "judge_deliveries",
    "judge_recount",
    "notified_final",
    "parse_summary",
    "parse_timestamp",
]

ALL_CURRENCIES = "*"  # key used when the summary reports one revenue figure for all currencies
MAX_IDS_PER_CALL = 10_000


@dataclass(frozen=True)
class AuditConfig:
    analytics_url: str = "http://127.0.0.1:8081"
    notifications_url: str | None = "http://127.0.0.1:8082"
    timeout: float = 60.0  # how long to wait for every accepted order to show up
    poll_interval: float = 0.5
    settle: float = 1.0  # wait after all showed up, then re-read everything to catch late doubles
    summary_timeout: float = 10.0  # the summary may be cached; wait this long for it to catch up
    chunk_size: int = MAX_IDS_PER_CALL
    request_timeout: float = 30.0
    # With the fulfilment saga on: an order is done only when analytics has applied one of these
    # states and every channel that sent its OrderCreated notice also sent the final one
    # (``log:confirmed``). None: done once applied and notified at all (saga off).
    final_states: frozenset[str] | None = None
    # Recount the analytics totals from the facts (read from this database, one snapshot) and
    # compare the stored aggregates and the API's answers with it; None: no recount.
    analytics_database_url: str | None = None
    # The analytics database holds this run's orders only (a fresh one per run): then every
    # fact must be an accepted order and the totals must be exactly the accepted orders'.
    exclusive: bool = False
    top_limit: int = 100  # how much of each top list to compare (the API's maximum by default)


@dataclass(frozen=True)
class Summary:
    total_orders: int
    revenue: dict[str, Decimal]  # by currency, or {ALL_CURRENCIES: total}


@dataclass(frozen=True)
class AnalyticsRecord:
    order_id: str
    total_amount: Decimal | None
    currency: str | None
    occurred_at: float | None  # epoch seconds
    applied_at: float | None
    # The order's state as analytics last applied it (None from services before issue 6).
    status: str | None = None


# States whose revenue analytics books; cancelled, rejected and payment-failed orders are taken
# back out, and a scheduled order is booked only once it becomes created.
BOOKED_STATES = frozenset({"created", "paid", "confirmed", None})
# Where the fulfilment saga leaves an order (every one of them sends a notification).
SAGA_FINAL_STATES = frozenset({"confirmed", "payment_failed", "rejected", "cancelled"})


@dataclass
class AuditReport:
    accepted: int = 0
    analytics_found: int = 0
    lost: list[str] = field(default_factory=list)
    analytics_duplicates: list[str] = field(default_factory=list)
    amount_mismatches: list[str] = field(default_factory=list)
    notifications_checked: bool = False
    notifications_found: int = 0
    notifications_missing: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    # Only with final states: applied but never reached a final state in analytics (its last
    # event lost or stuck), or a final state whose notification was never sent.
    final_checked: bool = False
    unfinished: list[str] = field(default_factory=list)
    final_notifications_missing: list[str] = field(default_factory=list)
    sends_by_channel: dict[str, int] = field(default_factory=dict)
    expected_revenue: dict[str, Decimal] = field(default_factory=dict)
    final_states: dict[str, int] = field(default_factory=dict)
    summary_checked: bool = False
    summary_orders_delta: int | None = None
    summary_revenue_delta: dict[str, Decimal] = field(default_factory=dict)
    orders_difference: int | None = None
    revenue_difference: dict[str, Decimal] = field(default_factory=dict)
    e2e_latency: LatencySummary = field(default_factory=lambda: summarize([]))
    first_applied_at: float | None = None
    last_applied_at: float | None = None
    # Wall clock when the polling first saw every order done (None: never, timed out).
    completed_at: float | None = None
    wait_seconds: float = 0.0
    timed_out: bool = False
    notes: list[str] = field(default_factory=list)
    recount_checked: bool = False
    facts_read: int = 0
    # Stored aggregate rows that differ from the recount of the facts (one DB snapshot).
    aggregate_mismatches: list[str] = field(default_factory=list)
    # API answers (summary, revenue buckets, top lists) that differ from the recount.
    api_mismatches: list[str] = field(default_factory=list)
    # Facts whose fields differ from the accepted order; facts of no accepted order.
    fact_mismatches: list[str] = field(default_factory=list)
    unexpected_facts: list[str] = field(default_factory=list)

    @property
    def lost_count(self) -> int:
        return len(self.lost)

    @property
    def doubled_count(self) -> int:
        return len(self.doubled) + len(self.analytics_duplicates)

    @property
    def summary_matches(self) -> bool:
        return (
            self.summary_checked
            and self.orders_difference == 0
            and not any(self.revenue_difference.values())
        )

    @property
    def totals_match(self) -> bool:
        """Every recounted total agrees (vacuously true when no recount ran)."""
        return not (
            self.aggregate_mismatches
            or self.api_mismatches
            or self.fact_mismatches
            or self.unexpected_facts
        )

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing doubled, every notification sent, every total recounted (and,
        with final states, every order final in analytics and its final notification sent)."""
        return (
            self.lost_count == 0
            and self.doubled_count == 0
            and not self.notifications_missing
            and not self.unfinished
            and not self.final_notifications_missing
            and not self.amount_mismatches
            and self.totals_match
        )


def parse_timestamp(value: Any) -> float | None:
    """RFC 3339 text (``Z`` or offset) or epoch seconds -> epoch seconds."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, float):
        return None  # a float on the money path is itself a contract violation
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def parse_summary(body: Mapping[str, Any]) -> Summary:
    """Accepts ``total_revenue`` as one decimal string or a per-currency mapping."""
    orders = int(body.get("total_orders", 0))
    revenue: dict[str, Decimal] = {}
    raw = body.get("total_revenue")
    if isinstance(raw, Mapping):
        for currency, amount in raw.items():
            value = _decimal(amount)
            if value is not None:
                revenue[str(currency)] = value
    elif raw is not None:
        value = _decimal(raw)
        if value is None:
            raise ValueError(f"total_revenue is not an exact decimal string: {raw!r}")
        revenue[ALL_CURRENCIES] = value
    for key in ("revenue_by_currency", "by_currency"):
        extra = body.get(key)
        if isinstance(extra, Mapping) and ALL_CURRENCIES in revenue and len(revenue) == 1:
            per = {str(c): _decimal(a) for c, a in extra.items()}
            revenue = {c: a for c, a in per.items() if a is not None}
    return Summary(orders, revenue)


def _revenue_delta(before: Summary, after: Summary) -> dict[str, Decimal]:
    keys = set(before.revenue) | set(after.revenue)
    return {k: after.revenue.get(k, Decimal(0)) - before.revenue.get(k, Decimal(0)) for k in keys}


def booked_orders(
    accepted: Sequence[AcceptedOrder], analytics: Iterable[AnalyticsRecord]
) -> list[AcceptedOrder]:
    """The accepted orders whose final state still counts as booked revenue."""
    status = {r.order_id: r.status for r in analytics}
    return [o for o in accepted if status.get(o.order_id) in BOOKED_STATES]


def _expected_revenue(accepted: Sequence[AcceptedOrder], per_currency: bool) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for order in accepted:
        key = order.currency if per_currency else ALL_CURRENCIES
        totals[key] = totals.get(key, Decimal(0)) + order.total_amount
    return totals


def notified_final(sends: Mapping[str, int], final_states: frozenset[str]) -> bool:
    """Every channel that sent the OrderCreated notice (bare key ``log``) also sent a final
    one (``log:confirmed``, ``log:payment_failed`` ...)."""
    created = {k for k, n in sends.items() if ":" not in k and n > 0}
    final = {
        k.split(":", 1)[0]
        for k, n in sends.items()
        if n > 0 and ":" in k and k.split(":", 1)[1] in final_states
    }
    return bool(created) and created <= final


def evaluate(
    accepted: Sequence[AcceptedOrder],
    analytics: Iterable[AnalyticsRecord],
    notifications: Iterable[tuple[str, Mapping[str, int]]] | None,
    summary_before: Summary | None = None,
    summary_after: Summary | None = None,
    *,
    final_states: frozenset[str] | None = None,
) -> AuditReport:
    """The verdict from what the services reported; pure, so it is tested without a network."""
    analytics = list(analytics)
    report = AuditReport(accepted=len(accepted))
    expected = {o.order_id: o for o in accepted}
    report.final_states = dict(
        sorted(Counter(str(r.status) for r in analytics if r.order_id in expected).items())
    )
    seen = Counter[str]()
    latencies: list[float] = []
    applied: list[float] = []
    for rec in analytics:
        if rec.order_id not in expected:
            continue
        seen[rec.order_id] += 1
        if seen[rec.order_id] > 1:
            continue
        order = expected[rec.order_id]
        if rec.total_amount is not None and (
            rec.total_amount != order.total_amount
            or (rec.currency is not None and rec.currency != order.currency)
        ):
            report.amount_mismatches.append(rec.order_id)
        if rec.applied_at is not None:
            applied.append(rec.applied_at)
            if rec.occurred_at is not None:
                latencies.append(max(0.0, rec.applied_at - rec.occurred_at))
    report.analytics_found = len(seen)
    report.lost = [oid for oid in expected if oid not in seen]
    if final_states is not None:
        report.final_checked = True
        status = {r.order_id: r.status for r in analytics if r.order_id in expected}
        report.unfinished = [
            oid for oid in expected if oid in status and status[oid] not in final_states
        ]
    report.analytics_duplicates = sorted(oid for oid, n in seen.items() if n > 1)
    report.e2e_latency = summarize(latencies)
    if applied:
        report.first_applied_at, report.last_applied_at = min(applied), max(applied)

    if notifications is not None:
        report.notifications_checked = True
        sent: dict[str, Counter[str]] = {}
        for order_id, sends in notifications:
            if order_id not in expected:
                continue
            counts = sent.setdefault(order_id, Counter())
            for channel, n in sends.items():
                counts[channel] += int(n)
        channels = Counter[str]()
        for counts in sent.values():
            channels.update(counts)
        report.sends_by_channel = dict(sorted(channels.items()))
        delivered = {oid for oid, counts in sent.items() if sum(counts.values()) > 0}
        report.notifications_found = len(delivered)
        report.notifications_missing = [oid for oid in expected if oid not in delivered]
        report.doubled = sorted(
            oid for oid, counts in sent.items() if any(n > 1 for n in counts.values())
        )
        if final_states is not None:
            report.final_notifications_missing = [
                oid
                for oid in expected
                if oid in delivered and not notified_final(sent[oid], final_states)
            ]

    if summary_before is not None and summary_after is not None:
        report.summary_checked = True
        per_currency = ALL_CURRENCIES not in summary_after.revenue
        booked = booked_orders(accepted, analytics)
        report.expected_revenue = _expected_revenue(booked, per_currency)
        report.summary_orders_delta = summary_after.total_orders - summary_before.total_orders
        report.summary_revenue_delta = _revenue_delta(summary_before, summary_after)
        report.orders_difference = report.summary_orders_delta - len(booked)
        keys = set(report.expected_revenue) | set(report.summary_revenue_delta)
        report.revenue_difference = {
            k: report.summary_revenue_delta.get(k, Decimal(0))
            - report.expected_revenue.get(k, Decimal(0))
            for k in sorted(keys)
        }
    return report


@dataclass
class ReadOuts:
    """What the analytics API answered (parsed JSON bodies), for the recount to judge."""

    summary: Mapping[str, Any] | None = None
    revenue: Mapping[str, Any] | None = None
    top_products: Mapping[str, Any] | None = None
    top_customers: Mapping[str, Any] | None = None


@dataclass
class RecountVerdict:
    facts_read: int = 0
    aggregate_mismatches: list[Mismatch] = field(default_factory=list)
    api_mismatches: list[Mismatch] = field(default_factory=list)
    fact_mismatches: list[Mismatch] = field(default_factory=list)
    facts_missing: list[str] = field(default_factory=list)
    unexpected_facts: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.aggregate_mismatches
            or self.api_mismatches
            or self.fact_mismatches
            or self.facts_missing
            or self.unexpected_facts
        )

    def apply_to(self, report: AuditReport, limit: int = 50) -> None:
        report.recount_checked = True
        report.facts_read = self.facts_read
        report.aggregate_mismatches = [m.describe() for m in self.aggregate_mismatches[:limit]]
        report.api_mismatches = [m.describe() for m in self.api_mismatches[:limit]]
        report.fact_mismatches = [m.describe() for m in self.fact_mismatches[:limit]]
        report.unexpected_facts = self.unexpected_facts[:limit]
        report.lost += [oid for oid in self.facts_missing if oid not in set(report.lost)]
        for name, items in (
            ("stored aggregate rows differ from the recount", self.aggregate_mismatches),
            ("API answers differ from the recount", self.api_mismatches),
            ("facts differ from the accepted orders", self.fact_mismatches),
            ("facts belong to no accepted order", self.unexpected_facts),
        ):
            if len(items) > limit:
                report.notes.append(f"{len(items)} {name}; the first {limit} are listed")


def _facts_of(order: AcceptedOrder) -> AcceptedFacts:
    return AcceptedFacts(
        order.order_id,
        order.total_amount,
        order.currency,
        order.customer_id,
        order.product_id,
        order.quantity,
    )


def judge_recount(
    accepted: Sequence[AcceptedOrder],
    snapshot: AnalyticsSnapshot,
    readouts: ReadOuts | None,
    *,
    exclusive: bool,
    top_limit: int = 100,
) -> RecountVerdict:
    """Pure: the stored aggregates and the API's answers against a recount of the facts, and
    the facts against the accepted orders. With ``exclusive`` the facts must be exactly the
    accepted orders, so the totals are, transitively, exactly the accepted orders' totals."""
    verdict = RecountVerdict(facts_read=len(snapshot.facts))
    expected: Totals = recount(snapshot.facts.values())
    verdict.aggregate_mismatches = compare_tables(expected, snapshot.stored)
    missing, differ, unexpected = compare_facts(
        [_facts_of(o) for o in accepted], snapshot.facts, exclusive=exclusive
    )
    verdict.facts_missing, verdict.fact_mismatches, verdict.unexpected_facts = (
        missing,
        differ,
        unexpected,
    )
    if readouts is not None:
        api: list[Mismatch] = []
        for name, body in (
            ("summary", readouts.summary),
            ("revenue", readouts.revenue),
            ("top-products", readouts.top_products),
            ("top-customers", readouts.top_customers),
        ):
            if body is None:
                api.append(Mismatch(name, "", "no answer", "an answer"))
        if readouts.summary is not None:
            api += compare_summary(readouts.summary, expected)
        if readouts.revenue is not None:
            api += compare_revenue(readouts.revenue, expected)
        if readouts.top_products is not None:
            api += compare_top(
                "top-products", "product_id", readouts.top_products, expected["product"], top_limit
            )
        if readouts.top_customers is not None:
            api += compare_top(
                "top-customers",
                "customer_id",
                readouts.top_customers,
                expected["customer"],
                top_limit,
            )
        verdict.api_mismatches = api
    return verdict


def revenue_window(facts: Iterable[Any], max_hours: int = 999) -> tuple[str, str] | None:
    """[from, to) in RFC 3339 covering the hours these facts were created or changed in."""
    hours = set()
    for fact in facts:
        hours.add(hour_key(fact.created_at))
        if fact.status_changed_at is not None:
            hours.add(hour_key(fact.status_changed_at))
    if not hours:
        return None
    last = datetime.fromisoformat(max(hours))
    first = max(datetime.fromisoformat(min(hours)), last - timedelta(hours=max_hours - 1))
    return first.isoformat() + "Z", (last + timedelta(hours=1)).isoformat() + "Z"


def _chunks(ids: Sequence[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(ids), size):
        yield list(ids[i : i + size])


class Auditor:
    """Talks to the two audit endpoints and the summary; ``client`` is injectable for tests."""

    def __init__(self, config: AuditConfig, client: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._client = client or httpx.AsyncClient(timeout=config.request_timeout)
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Auditor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def summary(self) -> Summary | None:
        """None when the summary cannot be read (the audit still runs, without the delta)."""
        try:
            response = await self._client.get(f"{self.config.analytics_url}/analytics/summary")
            response.raise_for_status()
            return parse_summary(response.json())
        except (httpx.HTTPError, ValueError, TypeError):
            return None

    async def _post_ids(self, url: str, ids: Sequence[str]) -> tuple[list[dict[str, Any]], bool]:
        """Every record for ``ids``; the flag is False when a call failed (retry later)."""
        records: list[dict[str, Any]] = []
        complete = True
        for chunk in _chunks(ids, self.config.chunk_size):
            try:
                response = await self._client.post(url, json={"order_ids": chunk})
                response.raise_for_status()
                records.extend(response.json().get("orders", []))
            except (httpx.HTTPError, ValueError):
                complete = False
        return records, complete

    async def analytics_records(self, ids: Sequence[str]) -> tuple[list[AnalyticsRecord], bool]:
        raw, complete = await self._post_ids(f"{self.config.analytics_url}/analytics/audit", ids)
        return [
            AnalyticsRecord(
                order_id=str(r.get("order_id")),
                total_amount=_decimal(r.get("total_amount")),
                currency=r.get("currency"),
                occurred_at=parse_timestamp(r.get("occurred_at")),
                applied_at=parse_timestamp(r.get("applied_at")),
                status=r.get("status"),
            )
            for r in raw
        ], complete

    async def notification_sends(
        self, ids: Sequence[str]
    ) -> tuple[list[tuple[str, dict[str, int]]], bool]:
        assert self.config.notifications_url is not None
        raw, complete = await self._post_ids(
            f"{self.config.notifications_url}/notifications/audit", ids
        )
        return [
            (str(r.get("order_id")), {str(k): int(v) for k, v in (r.get("sends") or {}).items()})
            for r in raw
        ], complete

    async def run(
        self,
        accepted: Sequence[AcceptedOrder],
        summary_before: Summary | None,
        *,
        on_complete: Callable[[], object] | None = None,
    ) -> AuditReport:
        """Wait (bounded) until both services report every accepted order, then judge.

        ``on_complete`` is called once, the moment the polling sees every order done (before
        the settle and the final read): the benchmark closes its CPU window there."""
        cfg = self.config
        final = cfg.final_states
        started = time.monotonic()
        deadline = started + cfg.timeout
        ids = [o.order_id for o in accepted]
        pending_analytics = list(ids)
        pending_notify = list(ids) if cfg.notifications_url else []
        timed_out = False
        completed_at: float | None = None
        if not ids:
            completed_at = time.time()
            if on_complete is not None:
                on_complete()
        while pending_analytics or pending_notify:
            if pending_analytics:
                records, _ = await self.analytics_records(pending_analytics)
                found = {r.order_id for r in records if final is None or r.status in final}
                pending_analytics = [i for i in pending_analytics if i not in found]
            if pending_notify:
                sends, _ = await self.notification_sends(pending_notify)
                found = {
                    oid
                    for oid, s in sends
                    if (sum(s.values()) > 0 if final is None else notified_final(s, final))
                }
                pending_notify = [i for i in pending_notify if i not in found]
            if not (pending_analytics or pending_notify):
                completed_at = time.time()
                if on_complete is not None:
                    on_complete()
                break
            if time.monotonic() >= deadline:
                timed_out = True
                break
            await asyncio.sleep(cfg.poll_interval)
        if not timed_out and cfg.settle > 0:
            await asyncio.sleep(cfg.settle)
        # Final full read: late duplicates and exact per-order records for the verdict.
        analytics, analytics_complete = await self.analytics_records(ids)
        notifications = None
        notifications_complete = True
        if cfg.notifications_url:
            notifications, notifications_complete = await self.notification_sends(ids)
        summary_after, analytics = await self._summary_after(summary_before, accepted, analytics)
        report = evaluate(
            accepted, analytics, notifications, summary_before, summary_after, final_states=final
        )
        report.wait_seconds = time.monotonic() - started
        report.timed_out = timed_out
        report.completed_at = completed_at
        if not analytics_complete:
            report.notes.append("some analytics audit calls failed in the final read")
        if not notifications_complete:
            report.notes.append("some notification audit calls failed in the final read")
        if cfg.analytics_database_url:
            verdict = await self.recount(accepted)
            if verdict is None:
                report.notes.append("analytics database unreadable: no recount of the totals")
            else:
                verdict.apply_to(report)
        if summary_before is None:
            report.notes.append("summary unavailable before the run: no delta check")
        elif summary_after is None:
            report.notes.append("summary unavailable after the run: no delta check")
        return report

    async def _get_json(self, path: str, **params: str) -> Mapping[str, Any] | None:
        try:
            response = await self._client.get(f"{self.config.analytics_url}{path}", params=params)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, Mapping) else None

    async def readouts(self, window: tuple[str, str] | None) -> ReadOuts:
        limit = str(self.config.top_limit)
        revenue = None
        if window is not None:
            revenue = await self._get_json(
                "/analytics/revenue", granularity="hour", **{"from": window[0], "to": window[1]}
            )
        else:  # no facts yet: the default window must be empty
            revenue = await self._get_json("/analytics/revenue", granularity="hour")
        return ReadOuts(
            summary=await self._get_json("/analytics/summary"),
            revenue=revenue,
            top_products=await self._get_json("/analytics/top-products", limit=limit),
            top_customers=await self._get_json("/analytics/top-customers", limit=limit),
        )

    async def recount(self, accepted: Sequence[AcceptedOrder]) -> RecountVerdict | None:
        """Recount the totals from one snapshot of the facts and judge the stored aggregates and
        the API's answers; re-read until all agree or ``summary_timeout`` passes (the API may
        serve a cached summary, and late transitions may still be applying). None when the
        database cannot be read."""
        cfg = self.config
        assert cfg.analytics_database_url is not None
        deadline = time.monotonic() + cfg.summary_timeout
        verdict: RecountVerdict | None = None
        while True:
            try:
                snapshot = await read_snapshot(cfg.analytics_database_url)
            except Exception:
                snapshot = None
            if snapshot is not None:
                mine = [
                    snapshot.facts[o.order_id] for o in accepted if o.order_id in snapshot.facts
                ]
                window = revenue_window(mine or snapshot.facts.values())
                verdict = judge_recount(
                    accepted,
                    snapshot,
                    await self.readouts(window),
                    exclusive=cfg.exclusive,
                    top_limit=cfg.top_limit,
                )
                if verdict.clean:
                    return verdict
            if time.monotonic() >= deadline:
                return verdict
            await asyncio.sleep(cfg.poll_interval)

    async def _summary_after(
        self,
        before: Summary | None,
        accepted: Sequence[AcceptedOrder],
        analytics: list[AnalyticsRecord],
    ) -> tuple[Summary | None, list[AnalyticsRecord]]:
        """The summary may be served from a cache, and orders may still be moving to their final
        state (fulfilment): re-read both until the summary shows the delta the final states
        imply, or ``summary_timeout`` passes (then the last readings are reported as they are)."""
        if before is None:
            return None, analytics
        ids = [o.order_id for o in accepted]
        deadline = time.monotonic() + self.config.summary_timeout
        after = await self.summary()
        while time.monotonic() < deadline:
            expected_orders = before.total_orders + len(booked_orders(accepted, analytics))
            if after is not None and after.total_orders == expected_orders:
                break
            await asyncio.sleep(self.config.poll_interval)
            fresh, complete = await self.analytics_records(ids)
            if complete:
                analytics = fresh
            after = await self.summary()
        return after, analytics


# The notification each lifecycle state sends (notification_worker's kinds): every order sends
# "created"; an order that ended in one of these sends that kind too. Paid sends nothing.
NOTIFYING_STATES = frozenset({"confirmed", "payment_failed", "rejected", "cancelled"})


@dataclass
class DeliveryVerdict:
    """Sends counted at the receiver: exactly one delivery per expected notification."""

    expected: int = 0
    delivered: int = 0
    missing: list[str] = field(default_factory=list)  # "<order_id>:<kind>"
    # One notification delivered under two idempotency keys: a double even at a receiver that
    # honours the key.
    doubled: list[str] = field(default_factory=list)
    # The same key delivered again: a retry of one send (the worker died between the
    # receiver's answer and its record); a receiver that honours the key applies it once.
    redelivered: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # deliveries no accepted order asked for

    @property
    def clean(self) -> bool:
        return not (self.missing or self.doubled or self.redelivered or self.unexpected)


def expected_notifications(final_states: Mapping[str, str | None]) -> set[tuple[str, str]]:
    """(order_id, kind) every accepted order must have sent, from its final state."""
    out = set()
    for order_id, state in final_states.items():
        out.add((order_id, "created"))
        if state in NOTIFYING_STATES:
            out.add((order_id, str(state)))
    return out


def judge_deliveries(
    final_states: Mapping[str, str | None],
    deliveries: Iterable[tuple[str, str | None, str | None]],
) -> DeliveryVerdict:
    """``deliveries``: (idempotency key, order id, kind) as the receiver counted them, one
    tuple per delivery. Each expected (order, kind) must arrive under exactly one key, once."""
    expected = expected_notifications(final_states)
    by_key = Counter[str]()
    keys_of: dict[tuple[str, str], set[str]] = {}
    unexpected: list[str] = []
    for key, order_id, kind in deliveries:
        by_key[key] += 1
        pair = (str(order_id), str(kind))
        if pair not in expected:
            if by_key[key] == 1:
                unexpected.append(f"{order_id}:{kind} ({key})")
            continue
        keys_of.setdefault(pair, set()).add(key)
    verdict = DeliveryVerdict(expected=len(expected), delivered=sum(by_key.values()))
    verdict.missing = sorted(f"{o}:{k}" for o, k in expected if (o, k) not in keys_of)
    verdict.redelivered = sorted(k for k, n in by_key.items() if n > 1)
    # One notification sent under two keys (two events for one transition) is a double.
    verdict.doubled = sorted(
        f"{o}:{k} under {len(keys)} keys" for (o, k), keys in keys_of.items() if len(keys) > 1
    )
    verdict.unexpected = sorted(unexpected)
    return verdict
