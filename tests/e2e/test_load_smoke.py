"""The load tool against the real processes: a few hundred orders, nothing lost or doubled."""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal

import pytest

from loadtool.audit import AuditConfig
from loadtool.cli import EXIT_OK, run_and_audit
from loadtool.generator import GeneratorConfig
from loadtool.runner import LoadConfig
from tests.e2e.system import RunningSystem

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ORDERS = 300


async def test_every_accepted_order_is_applied_once_and_notified_once() -> None:
    async with RunningSystem() as system:
        result, report = await run_and_audit(
            LoadConfig(url=system.order_url, count=ORDERS, concurrency=8),
            GeneratorConfig(),
            AuditConfig(
                analytics_url=system.analytics_url,
                notifications_url=system.notifications_url,
                timeout=90,
            ),
            seed=8,
        )
    assert result.error_count == 0, result.error_samples
    assert len(result.accepted) == ORDERS
    assert report is not None
    assert report.lost == []
    assert report.doubled_count == 0, report.doubled + report.analytics_duplicates
    assert report.notifications_missing == []
    assert report.amount_mismatches == []
    assert report.summary_checked, report.notes
    assert report.orders_difference == 0
    assert all(diff == Decimal(0) for diff in report.revenue_difference.values()), (
        report.revenue_difference
    )
    assert report.e2e_latency.count == ORDERS


async def test_load_cli_exits_zero_and_writes_its_report(tmp_path) -> None:
    out = tmp_path / "load.json"
    async with RunningSystem() as system:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "loadtool",
            "--count",
            "200",
            "--concurrency",
            "8",
            "--idempotency-keys",
            "--seed",
            "3",
            "--url",
            system.order_url,
            "--analytics-url",
            system.analytics_url,
            "--notifications-url",
            system.notifications_url,
            "--audit-timeout",
            "90",
            "--fail-on-errors",
            "--strict-summary",
            "--no-progress",
            "--json",
            str(out),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        stdout, _ = await asyncio.wait_for(proc.communicate(), 200)
    assert proc.returncode == EXIT_OK, stdout.decode(errors="replace")
    data = json.loads(out.read_text())
    assert data["load"]["accepted"] == 200
    assert data["audit"]["lost"] == 0
    assert data["audit"]["doubled"] == 0
    assert data["audit"]["summary_matches"] is True
