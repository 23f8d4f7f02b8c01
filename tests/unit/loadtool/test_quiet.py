"""The bench waits for the system to go quiet before a phase that needs the machine to itself."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from loadtool import cpu
from loadtool.quiet import busy_cores, wait_until_quiet


def _python(code: str) -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", code])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def spinning() -> Iterator[int]:
    yield from _python("while True: pass")


@pytest.fixture
def sleeping() -> Iterator[int]:
    yield from _python("import time; time.sleep(60)")


def test_busy_cores_leave_out_the_load_generator_and_the_ignored() -> None:
    usage: dict[str, dict[str, object]] = {
        "order": {"cores": 0.5, "pids": [1]},
        "analytics-api": {"cores": 0.3, "pids": [2]},
        cpu.LOADGEN: {"cores": 0.9, "pids": [3]},
        cpu.TOTAL: {"cores": 1.7},
    }
    assert busy_cores(usage, ignore={"analytics-api"}) == 0.5


async def test_a_system_still_working_is_never_quiet(spinning: int) -> None:
    quiet = await wait_until_quiet(lambda: {"order": [spinning]}, window=0.5, timeout=1.2)
    assert quiet is None


async def test_an_idle_system_is_quiet_after_one_window(sleeping: int) -> None:
    quiet = await wait_until_quiet(lambda: {"order": [sleeping]}, window=0.3, timeout=5)
    assert quiet is not None and quiet < 1.0
