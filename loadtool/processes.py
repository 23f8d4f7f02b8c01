"""Starts the real services as subprocesses, waits for readiness, stops them with SIGTERM.

Shared by the benchmark and the end-to-end / fault-injection tests (tests/e2e/system.py), so
both run the system exactly the way an operator does: ``python -m <service>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = [
    "SERVICES",
    "ProcessGroup",
    "ServiceSpec",
    "free_port",
]


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one process and where it says it is ready."""

    name: str
    args: tuple[str, ...]  # after ``python -m``
    port_env: str
    default_port: int
    ready_path: str = "/health/ready"

    def url(self, env: Mapping[str, str]) -> str:
        return f"http://127.0.0.1:{env.get(self.port_env) or self.default_port}"


# Env names as read by each service's settings module.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("order", ("order_service",), "ORDER_HTTP_PORT", 8080),
    ServiceSpec("analytics-api", ("analytics_service", "api"), "ANALYTICS_HTTP_PORT", 8081),
    ServiceSpec(
        "analytics-consumer",
        ("analytics_service", "consumer"),
        "ANALYTICS_CONSUMER_HTTP_PORT",
        8083,
    ),
    ServiceSpec("notifications", ("notification_worker",), "NOTIFY_HTTP_PORT", 8082),
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessGroup:
    """The services as child processes; logs go to one file per service under ``log_dir``."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        services: tuple[ServiceSpec, ...] = SERVICES,
        log_dir: str | Path | None = None,
        python: str = sys.executable,
        cwd: str | Path | None = None,
        service_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.env = {**os.environ, **env}
        # Settings for one service only (its own broker user, a proxy in front of one dependency).
        self.service_env = {name: dict(extra) for name, extra in (service_env or {}).items()}
        self.specs = {s.name: s for s in services}
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="orderflow-logs-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.cwd = str(cwd or Path(__file__).resolve().parent.parent)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def url(self, name: str) -> str:
        return self.specs[name].url(self.env)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 40) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self, name: str) -> None:
        if name in self.procs and self.procs[name].poll() is None:
            return
        spec = self.specs[name]
        with open(self.log_path(name), "ab") as log:
            self.procs[name] = subprocess.Popen(
                [self.python, "-m", *spec.args],
                env={**self.env, **self.service_env.get(name, {})},
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, name: str, within: float = 30.0) -> None:
        """Polls the readiness URL; fails early (with the log tail) if the process exits."""
        url = self.url(name) + self.specs[name].ready_path
        deadline = time.monotonic() + within
        last = "no answer"
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode} before it was ready; "
                        f"log tail:\n{self.log_tail(name)}"
                    )
                try:
                    response = await client.get(url)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{name} not ready at {url} within {within}s (last: {last}); "
                        f"log tail:\n{self.log_tail(name)}"
                    )
                await asyncio.sleep(0.2)

    async def start_all(self, names: list[str] | None = None, within: float = 60.0) -> None:
        names = names or list(self.specs)
        for name in names:
            self.start(name)
        await asyncio.gather(*(self.wait_ready(n, within) for n in names))

    async def stop(self, name: str, within: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``within`` seconds for a graceful exit, then SIGKILL; the exit code
        (negative: killed by that signal) or None if it was never started."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, within)
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
                return -int(signal.SIGKILL)
        return proc.returncode

    def kill(self, name: str) -> None:
        """SIGKILL at once (fault injection: a crash, no graceful shutdown)."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)

    async def stop_all(self, within: float = 30.0) -> dict[str, int | None]:
        """Consumers first so they drain what the order service already published."""
        order = sorted(self.procs, key=lambda n: n == "order")
        codes = await asyncio.gather(*(self.stop(n, within) for n in order))
        return dict(zip(order, codes, strict=True))
