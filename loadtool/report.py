"""Turns a load result and an audit report into one JSON document and rich tables.

The JSON is built first and the tables are rendered from it, so both always say the same thing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from loadtool.audit import AuditReport
from loadtool.runner import LoadResult
from loadtool.stats import rate, summarize

__all__ = ["audit_json", "load_json", "render", "report_json"]

_MAX_LISTED_IDS = 50


def load_json(result: LoadResult) -> dict[str, Any]:
    data: dict[str, Any] = {
        "concurrency": result.concurrency,
        "offered_rate": result.offered_rate,
        "started_at": result.started_at,
        "elapsed_s": round(result.elapsed, 3),
        "sent": result.sent,
        "accepted": len(result.accepted),
        "accepted_per_s": round(rate(len(result.accepted), result.elapsed), 1),
        "latency_ms": summarize(result.latencies).as_dict(),
        "errors": dict(sorted(result.errors.items())),
        "error_count": result.error_count,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "connections_opened": result.connections_opened,
    }
    if result.latency_from_schedule:
        data["latency_from_schedule_ms"] = summarize(result.latency_from_schedule).as_dict()
    if result.error_samples:
        data["error_samples"] = result.error_samples
    return data


def _money(values: dict[str, Decimal]) -> dict[str, str]:
    return {k: str(v) for k, v in values.items()}


def audit_json(report: AuditReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "accepted": report.accepted,
        "analytics_found": report.analytics_found,
        "lost": report.lost_count,
        "lost_ids": report.lost[:_MAX_LISTED_IDS],
        "doubled": report.doubled_count,
        "doubled_ids": (report.doubled + report.analytics_duplicates)[:_MAX_LISTED_IDS],
        "amount_mismatches": len(report.amount_mismatches),
        "notifications_checked": report.notifications_checked,
        "notifications_found": report.notifications_found,
        "notifications_missing": len(report.notifications_missing),
        "sends_by_channel": report.sends_by_channel,
        "final_states": report.final_states,
        "final_checked": report.final_checked,
        "unfinished": len(report.unfinished),
        "unfinished_ids": report.unfinished[:_MAX_LISTED_IDS],
        "final_notifications_missing": len(report.final_notifications_missing),
        "completed_at": report.completed_at,
        "summary_checked": report.summary_checked,
        "summary_matches": report.summary_matches,
        "summary_orders_delta": report.summary_orders_delta,
        "orders_difference": report.orders_difference,
        "expected_revenue": _money(report.expected_revenue),
        "summary_revenue_delta": _money(report.summary_revenue_delta),
        "revenue_difference": _money(report.revenue_difference),
        "e2e_latency_ms": report.e2e_latency.as_dict(),
        "first_applied_at": report.first_applied_at,
        "last_applied_at": report.last_applied_at,
        "wait_s": round(report.wait_seconds, 3),
        "timed_out": report.timed_out,
        "notes": report.notes,
        "recount_checked": report.recount_checked,
        "facts_read": report.facts_read,
        "totals_match": report.totals_match,
        "aggregate_mismatches": report.aggregate_mismatches,
        "api_mismatches": report.api_mismatches,
        "fact_mismatches": report.fact_mismatches,
        "unexpected_facts": report.unexpected_facts[:_MAX_LISTED_IDS],
    }


def report_json(result: LoadResult, audit: AuditReport | None) -> dict[str, Any]:
    data: dict[str, Any] = {"load": load_json(result)}
    if audit is not None:
        data["audit"] = audit_json(audit)
        if audit.last_applied_at is not None and result.started_at:
            span = audit.last_applied_at - result.started_at
            data["audit"]["e2e_orders_per_s"] = round(rate(audit.analytics_found, span), 1)
    return data


def _latency_row(table: Table, label: str, lat: dict[str, Any]) -> None:
    table.add_row(
        label,
        f"p50 {lat['p50_ms']:.1f}  p95 {lat['p95_ms']:.1f}  p99 {lat['p99_ms']:.1f}  "
        f"max {lat['max_ms']:.1f} ms  (n={lat['count']})",
    )


def render(data: dict[str, Any], console: Console) -> None:
    load = data["load"]
    table = Table(title="Load", show_header=False, title_justify="left")
    table.add_column("what", style="cyan")
    table.add_column("value")
    mode = f"offered {load['offered_rate']}/s" if load["offered_rate"] else "closed loop"
    table.add_row("mode", f"{mode}, concurrency {load['concurrency']}")
    table.add_row("sent / accepted", f"{load['sent']} / {load['accepted']}")
    table.add_row("accepted req/s", f"{load['accepted_per_s']:.1f}  over {load['elapsed_s']:.2f} s")
    _latency_row(table, "POST latency", load["latency_ms"])
    if "latency_from_schedule_ms" in load:
        _latency_row(table, "from schedule", load["latency_from_schedule_ms"])
    errors = load["errors"]
    table.add_row(
        "errors",
        ", ".join(f"{k}: {v}" for k, v in errors.items()) if errors else "[green]none[/]",
    )
    console.print(table)
    audit = data.get("audit")
    if audit is None:
        return
    table = Table(title="End-to-end audit", show_header=False, title_justify="left")
    table.add_column("what", style="cyan")
    table.add_column("value")

    def flag(n: int) -> str:
        return f"[green]{n}[/]" if n == 0 else f"[bold red]{n}[/]"

    table.add_row("verdict", "[bold green]OK[/]" if audit["ok"] else "[bold red]FAILED[/]")
    table.add_row("analytics found", f"{audit['analytics_found']} / {audit['accepted']}")
    table.add_row("lost", flag(audit["lost"]))
    table.add_row("doubled", flag(audit["doubled"]))
    table.add_row("amount mismatches", flag(audit["amount_mismatches"]))
    if audit["notifications_checked"]:
        table.add_row(
            "notifications",
            f"{audit['notifications_found']} / {audit['accepted']} sent, missing "
            f"{flag(audit['notifications_missing'])}, by channel {audit['sends_by_channel']}",
        )
    if audit.get("final_states"):
        table.add_row("final states", str(audit["final_states"]))
    if audit.get("final_checked"):
        table.add_row(
            "not final / final notice missing",
            f"{flag(audit['unfinished'])} / {flag(audit['final_notifications_missing'])}",
        )
    if audit["summary_checked"]:
        table.add_row(
            "summary delta",
            f"orders {audit['summary_orders_delta']} (difference "
            f"{flag(abs(audit['orders_difference'] or 0))}), revenue "
            f"{audit['summary_revenue_delta']} expected {audit['expected_revenue']} "
            f"difference {audit['revenue_difference']}",
        )
    else:
        table.add_row("summary delta", "[yellow]not checked[/]")
    if audit.get("recount_checked"):
        bad = (
            audit["aggregate_mismatches"]
            + audit["api_mismatches"]
            + audit["fact_mismatches"]
            + [f"fact of no accepted order: {oid}" for oid in audit["unexpected_facts"]]
        )
        table.add_row(
            "totals recount",
            f"{audit['facts_read']} facts; differences {flag(len(bad))}",
        )
        for line in bad[:10]:
            table.add_row("", f"[red]{line}[/]")
    else:
        table.add_row("totals recount", "[yellow]not checked[/]")
    _latency_row(table, "e2e latency", audit["e2e_latency_ms"])
    if "e2e_orders_per_s" in audit:
        table.add_row("e2e orders/s", f"{audit['e2e_orders_per_s']:.1f} (first send to last apply)")
    table.add_row(
        "waited",
        f"{audit['wait_s']:.2f} s" + (" [red](timed out)[/]" if audit["timed_out"] else ""),
    )
    for note in audit["notes"]:
        table.add_row("note", f"[yellow]{note}[/]")
    console.print(table)
