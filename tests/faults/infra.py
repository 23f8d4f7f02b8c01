"""Stopping and starting the REAL MariaDB, Redis and RabbitMQ for the full fault suite.

The machine is shared: before touching a real server we make sure no other pytest runs (skip
otherwise), and whatever we stop is brought back by deploy/local-infra.sh in a ``finally``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

__all__ = [
    "mariadb_stopped",
    "other_pytest_processes",
    "rabbitmq_app_stopped",
    "rabbitmq_server_stopped",
    "redis_stopped",
    "require_exclusive_infra",
]

ROOT = Path(__file__).resolve().parents[2]
LOCAL_INFRA = ROOT / "deploy" / "local-infra.sh"


def _ancestors() -> set[int]:
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def other_pytest_processes() -> list[str]:
    out = subprocess.run(["pgrep", "-af", "pytest"], capture_output=True, text=True).stdout
    mine = _ancestors()
    others = []
    for line in out.splitlines():
        pid, _, cmd = line.partition(" ")
        if int(pid) in mine or "pgrep" in cmd:
            continue
        # A run queued on a lock (``flock LOCK pytest ...``) touches no server while it waits;
        # once it holds the lock, its pytest child is listed on its own.
        if cmd.split(" ", 1)[0].rsplit("/", 1)[-1] == "flock":
            continue
        try:  # children of this run (workers we spawned) are ours too
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid in mine:
            continue
        others.append(line)
    return others


def require_exclusive_infra() -> None:
    others = other_pytest_processes()
    if others:
        pytest.skip(f"other test runs share the real servers; not stopping them: {others[:3]}")


async def _run(*cmd: str, timeout: float = 120.0, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode(errors="replace")
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {text[-2000:]}")
    return text


async def bring_infra_back() -> None:
    await _run("bash", str(LOCAL_INFRA), timeout=300)


@asynccontextmanager
async def rabbitmq_app_stopped() -> AsyncIterator[None]:
    """``rabbitmqctl stop_app`` ... ``start_app``: the node stays, the broker app restarts."""
    await _run("rabbitmqctl", "stop_app")
    try:
        yield
    finally:
        await _run("rabbitmqctl", "start_app")
        await _run("rabbitmqctl", "await_startup", "--timeout", "120", check=False)


@asynccontextmanager
async def rabbitmq_server_stopped() -> AsyncIterator[None]:
    """The whole node stopped, then started again by deploy/local-infra.sh."""
    await _run("rabbitmqctl", "stop")
    try:
        yield
    finally:
        await bring_infra_back()
        await _run("rabbitmqctl", "await_startup", "--timeout", "120", check=False)


@asynccontextmanager
async def mariadb_stopped() -> AsyncIterator[None]:
    await _run("mariadb-admin", "-uroot", "shutdown")
    try:
        yield
    finally:
        await bring_infra_back()


@asynccontextmanager
async def redis_stopped() -> AsyncIterator[None]:
    # SAVE: the local Redis runs without persistence; a save on shutdown keeps what the
    # notification worker recorded (sent marks, audit), as a persistent production Redis would.
    await _run("redis-cli", "shutdown", "save", check=False)
    try:
        yield
    finally:
        await bring_infra_back()
