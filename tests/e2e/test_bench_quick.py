"""The CI-sized benchmark: `python -m loadtool.bench --quick` runs end to end and reports every
figure, with nothing lost or doubled. Figures are printed, never asserted (machines differ)."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

pytestmark = pytest.mark.e2e

FIGURES = {
    "sustained_orders_per_s",
    "saturation_accepted_per_s",
    "saturation_post_p99_ms",
    "post_p99_ms_at_half_saturation",
    "e2e_p99_ms_at_500",
    "get_cached_per_s",
    "analytics_events_per_s",
    "notification_events_per_s",
}


async def test_quick_benchmark_reports_every_figure_and_loses_nothing(tmp_path):
    out = tmp_path / "bench.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "loadtool.bench",
        "--quick",
        "--json",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 420)
    text = stdout.decode(errors="replace")
    print(text)
    assert proc.returncode == 0, text
    report = json.loads(out.read_text())
    assert set(report["headline"]) >= FIGURES
    assert report["ceiling"]["mysql"] and report["ceiling"]["rabbitmq"]
    for phase in report["phases"]:
        assert phase["audit"]["lost"] == 0, phase["audit"]
        assert phase["audit"]["doubled"] == 0, phase["audit"]
    assert set(report["exit_codes"].values()) == {0}
