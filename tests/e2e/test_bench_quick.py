"""The CI-sized benchmark: `python -m loadtool.bench --quick` starts the system as `make run` does
(deploy/procfile_run.py, Procfile, fulfilment saga on, info logs), runs a few hundred orders,
prints every figure and CPU per order, and loses and doubles nothing, on databases of its own that
it drops after: make run's are left as they were. Figures are printed, never asserted (machines
differ)."""

from __future__ import annotations

import asyncio
import json
import sys

import aiomysql
import pytest

from loadtool.scratch_databases import ScratchDatabases

pytestmark = pytest.mark.e2e

FIGURES = {
    "sustained_orders_per_s_saga_on",
    "accepted_post_per_s_c16",
    "post_p99_ms_c16",
    "e2e_p99_ms_at_300_saga_on",
    "get_cached_per_s",
    "cpu_ms_per_order_saga_on",
}


# The run has its own bound (420 s below); the suite's default of 180 s is too short for it on a
# slow 2-core CI machine.
async def _rows_in_make_runs_databases() -> dict[str, int]:
    conn = await aiomysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        async with conn.cursor() as cur:
            counts = {}
            for table in ("order_db.orders", "order_db.outbox", "analytics_db.order_facts"):
                await cur.execute(f"SELECT COUNT(*) FROM {table}")
                (counts[table],) = await cur.fetchone()
            return counts
    finally:
        conn.close()


@pytest.mark.timeout(480)
async def test_quick_benchmark_reports_every_figure_and_loses_nothing(tmp_path):
    out = tmp_path / "bench.json"
    before = await _rows_in_make_runs_databases()
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
    report = json.loads(out.read_text())
    assert set(report["headline"]) >= FIGURES
    [saga] = report["configurations"]
    assert saga["saga"] is True
    assert saga["phases"]
    for phase in saga["phases"]:
        assert phase["audit"]["lost"] == 0, phase["audit"]
        assert phase["audit"]["doubled"] == 0, phase["audit"]
        assert phase["cpu"]["order"]["ms_per_order"] > 0, phase["cpu"]
        assert phase["mariadb"]["redo_kb_per_order"] > 0, phase["mariadb"]
    assert proc.returncode == 0, text
    assert await _rows_in_make_runs_databases() == before
    assert not any((await ScratchDatabases.for_bench().exists()).values())
