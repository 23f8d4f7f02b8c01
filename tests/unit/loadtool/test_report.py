from __future__ import annotations

import io
import json
from collections import Counter
from decimal import Decimal

from rich.console import Console

from loadtool.audit import AnalyticsRecord, Summary, evaluate
from loadtool.report import render, report_json
from loadtool.runner import AcceptedOrder, LoadResult


def sample_result() -> LoadResult:
    orders = [
        AcceptedOrder("a", Decimal("1.10"), "USD"),
        AcceptedOrder("b", Decimal("2.20"), "USD"),
    ]
    return LoadResult(
        started_at=1000.0,
        elapsed=2.0,
        sent=3,
        accepted=orders,
        latencies=[0.010, 0.020],
        errors=Counter({"503": 1}),
        statuses=Counter({201: 2, 503: 1}),
        concurrency=4,
    )


def test_report_json_is_serialisable_and_money_stays_text() -> None:
    result = sample_result()
    audit = evaluate(
        result.accepted,
        [
            AnalyticsRecord("a", Decimal("1.10"), "USD", 1000.0, 1000.5),
            AnalyticsRecord("b", Decimal("2.20"), "USD", 1000.0, 1003.0),
        ],
        [("a", {"log": 1}), ("b", {"log": 1})],
        Summary(0, {"*": Decimal("0")}),
        Summary(2, {"*": Decimal("3.30")}),
    )
    data = json.loads(json.dumps(report_json(result, audit)))
    assert data["load"]["accepted"] == 2
    assert data["load"]["accepted_per_s"] == 1.0
    assert data["load"]["errors"] == {"503": 1}
    assert data["load"]["latency_ms"]["p99_ms"] == 20.0
    assert data["audit"]["ok"] is True
    assert data["audit"]["revenue_difference"] == {"*": "0.00"}
    assert data["audit"]["expected_revenue"] == {"*": "3.30"}
    assert data["audit"]["e2e_orders_per_s"] == round(2 / 3.0, 1)


def test_render_prints_both_tables_and_the_verdict() -> None:
    result = sample_result()
    audit = evaluate(result.accepted, [], None)
    out = io.StringIO()
    render(report_json(result, audit), Console(file=out, width=160, color_system=None))
    text = out.getvalue()
    assert "accepted req/s" in text
    assert "503: 1" in text
    assert "FAILED" in text
    assert "lost" in text


def test_without_audit_only_the_load_table_is_printed() -> None:
    out = io.StringIO()
    render(report_json(sample_result(), None), Console(file=out, width=160, color_system=None))
    assert "End-to-end audit" not in out.getvalue()
