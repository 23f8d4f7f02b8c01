"""SIGTERM on a process whose HTTP only reports on its work (a consumer, the notification
worker): it drains first, answering /metrics and /health all the while, then exits 0. An API
process stops taking requests first (the control)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from common.testing import wait_until
from loadtool.processes import free_port

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def _running(
    drain_first: bool, directory: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
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

    try:
        await wait_until(live, timeout=20, message="the process to serve")
        yield proc, base
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _terminate_and_wait_for_the_drain(
    proc: asyncio.subprocess.Process, directory: Path
) -> None:
    proc.send_signal(signal.SIGTERM)

    async def draining() -> bool:
        return (directory / "draining").exists()

    await wait_until(draining, timeout=10, message="the drain to begin")
    assert proc.returncode is None  # still draining: the fault under test is in place


async def _release(proc: asyncio.subprocess.Process, directory: Path) -> int:
    (directory / "release").write_text("go")
    return await asyncio.wait_for(proc.wait(), 20)


async def test_a_draining_consumer_process_still_answers_metrics_and_health(tmp_path) -> None:
    async with _running(True, tmp_path) as (proc, base):
        await _terminate_and_wait_for_the_drain(proc, tmp_path)
        async with httpx.AsyncClient() as client:
            metrics = await client.get(f"{base}/metrics")
            live = await client.get(f"{base}/health/live")
        assert metrics.status_code == 200 and "draining_event_loop_lag_seconds" in metrics.text
        assert live.status_code == 200
        assert await _release(proc, tmp_path) == 0


async def test_an_api_process_stops_taking_requests_before_it_drains(tmp_path) -> None:
    async with _running(False, tmp_path) as (proc, base):
        await _terminate_and_wait_for_the_drain(proc, tmp_path)
        async with httpx.AsyncClient() as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{base}/metrics")
        assert await _release(proc, tmp_path) == 0
