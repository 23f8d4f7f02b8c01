"""SIGTERM on a process whose HTTP only reports on its work (a consumer, the notification
worker): it drains first, answering /metrics and /health all the while, then exits 0. An API
process stops taking requests first (the control)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import httpx
import pytest

from common.testing import wait_until
from loadtool.processes import free_port

pytestmark = pytest.mark.integration


async def _start(drain_first: bool, directory: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.draining_process",
        str(port),
        "1" if drain_first else "0",
        str(directory),
    )
    base = f"http://127.0.0.1:{port}"

    async def live() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{base}/health/live")).status_code == 200
        except httpx.HTTPError:
            return False

    await wait_until(live, timeout=20, message="the process to serve")
    return proc, base


async def _terminate_and_wait_for_the_drain(proc: asyncio.subprocess.Process, directory: Path):
    proc.send_signal(signal.SIGTERM)

    async def draining() -> bool:
        return (directory / "draining").exists()

    await wait_until(draining, timeout=10, message="the drain to begin")
    assert proc.returncode is None  # still draining: the fault under test is in place


async def test_a_draining_consumer_process_still_answers_metrics_and_health(tmp_path) -> None:
    proc, base = await _start(True, tmp_path)
    try:
        await _terminate_and_wait_for_the_drain(proc, tmp_path)
        async with httpx.AsyncClient() as client:
            metrics = await client.get(f"{base}/metrics")
            live = await client.get(f"{base}/health/live")
        assert metrics.status_code == 200 and "draining_event_loop_lag_seconds" in metrics.text
        assert live.status_code == 200
        (tmp_path / "release").write_text("go")
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_an_api_process_stops_taking_requests_before_it_drains(tmp_path) -> None:
    proc, base = await _start(False, tmp_path)
    try:
        await _terminate_and_wait_for_the_drain(proc, tmp_path)
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{base}/metrics")
        (tmp_path / "release").write_text("go")
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
