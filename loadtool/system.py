"""The system as ``make run`` starts it, for the benchmark: ``deploy/procfile_run.py Procfile``.

``ProcfileSystem`` makes sure the infrastructure is set up the way ``make run`` does
(``deploy/local-infra.sh``: databases, users, RabbitMQ vhost ``orderflow`` and per-service users;
then both services' migrations), starts ``python deploy/procfile_run.py Procfile`` with the given
env on its own free ports, waits for every process's ``/health/ready``, and stops it with SIGTERM
to the runner (which SIGTERMs every process's group and waits for them), as Ctrl-C on
``make run`` does. ``RunningSystem`` is the same interface over a system somebody else started
(``--use-running``).

Both say which pids make up each component, for ``loadtool.cpu``.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import fcntl
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from loadtool import cpu
from loadtool.processes import free_port

__all__ = [
    "ROOT",
    "BenchLock",
    "Endpoints",
    "ProcfileSystem",
    "RunningSystem",
    "exit_codes",
    "migrate",
    "procfile_env",
    "start_infra",
]

ROOT = Path(__file__).resolve().parent.parent
# Procfile process name -> the env var its HTTP port is read from (each service's settings).
PORT_ENV = {
    "order": "ORDER_HTTP_PORT",
    "order-fulfilment": "ORDER_FULFILMENT_HTTP_PORT",
    "analytics-api": "ANALYTICS_HTTP_PORT",
    "analytics-consumer": "ANALYTICS_CONSUMER_HTTP_PORT",
    "notifications": "NOTIFY_HTTP_PORT",
}
DEFAULT_PORTS = {
    "order": 8080,
    "order-fulfilment": 8084,
    "analytics-api": 8081,
    "analytics-consumer": 8083,
    "notifications": 8082,
}
# The process runner ``make run`` uses, relative to the repository (its command line names it).
RUNNER_SCRIPT = "deploy/procfile_run.py"
# procfile_run's last line: "procfile_run: exit codes {'order': 0, 'analytics-api': -9}".
# scheme://user:password@ -> scheme://user:***@
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_EXIT_CODES = re.compile(r"^procfile_run: exit codes (\{.*\})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Endpoints:
    ports: dict[str, int]

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    @property
    def order_url(self) -> str:
        return self.url("order")

    @property
    def analytics_url(self) -> str:
        return self.url("analytics-api")

    @property
    def notifications_url(self) -> str:
        return self.url("notifications")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Endpoints:
        return cls(
            {name: int(env.get(var) or DEFAULT_PORTS[name]) for name, var in PORT_ENV.items()}
        )

    @classmethod
    def free(cls) -> Endpoints:
        return cls({name: free_port() for name in PORT_ENV})


def procfile_env(text: str) -> dict[str, dict[str, str]]:
    """Procfile process name -> the env assignments in front of its command."""
    out: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, command = line.partition(":")
        env: dict[str, str] = {}
        with contextlib.suppress(ValueError):
            for word in shlex.split(command):
                if "=" not in word or word.startswith("-"):
                    break
                key, _, value = word.partition("=")
                env[key] = value
        out[name.strip()] = env
    return out


async def start_infra(root: Path = ROOT) -> list[str]:
    """What ``make infra`` does: MariaDB, Redis and RabbitMQ up, with users and definitions."""
    return await _run_steps([["bash", str(root / "deploy" / "local-infra.sh")]], root, {})


async def migrate(
    env: Mapping[str, str],
    services: tuple[str, ...] = ("order_service", "analytics_service"),
    root: Path = ROOT,
    python: str = sys.executable,
) -> list[str]:
    """What ``make migrate`` does, with ``env`` over the environment (scratch databases)."""
    return await _run_steps([[python, "-m", s, "migrate"] for s in services], root, env)


async def _run_steps(steps: list[list[str]], root: Path, env: Mapping[str, str]) -> list[str]:
    for argv in steps:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(root),
            # As the Makefile exports it: the local credential defaults apply.
            env={"ORDERFLOW_ENV": "local", **os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            tail = out.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{tail}")
    return [" ".join(a) for a in steps]


def exit_codes(log: str, names: list[str]) -> dict[str, int | None]:
    """Each process's exit code from the runner's ``procfile_run: exit codes {...}`` line (a
    Python dict repr; the last such line counts); None: not logged (the runner was killed)."""
    codes: dict[str, int | None] = dict.fromkeys(names)
    found = _EXIT_CODES.findall(log)
    if not found:
        return codes
    try:
        logged = ast.literal_eval(found[-1])
    except (ValueError, SyntaxError):
        return codes
    if isinstance(logged, dict):
        for name, rc in logged.items():
            if name in codes and isinstance(rc, int):
                codes[name] = rc
    return codes


class BenchLock:
    """One benchmark-started system at a time on this machine: they would share vhost
    ``orderflow``'s queues and each other's CPU."""

    def __init__(self, path: str = "/tmp/orderflow-bench.lock") -> None:
        self.path = path
        self._fh: IO[str] | None = None

    async def acquire(self, within: float = 600.0, on_wait: object = None) -> None:
        self._open()
        assert self._fh is not None
        deadline = time.monotonic() + within
        told = False
        while True:
            try:
                fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"another benchmark holds {self.path}") from None
                if not told and callable(on_wait):
                    on_wait()
                    told = True
                await asyncio.sleep(1.0)

    def _open(self) -> None:
        self._fh = open(self.path, "a")  # noqa: SIM115 - held until release()

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


async def wait_ready(urls: Mapping[str, str], within: float, alive: object = None) -> None:
    """Polls every ``<url>/health/ready`` until 200; ``alive()`` False stops early."""
    deadline = time.monotonic() + within
    pending = dict(urls)
    last: dict[str, str] = {}
    async with httpx.AsyncClient(timeout=2.0) as client:
        while pending:
            if callable(alive) and not alive():
                raise RuntimeError("the process runner exited before the system was ready")
            for name, url in list(pending.items()):
                try:
                    response = await client.get(f"{url}/health/ready")
                    if response.status_code == 200:
                        del pending[name]
                    else:
                        last[name] = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last[name] = repr(exc)
            if not pending:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not ready within {within}s: {last}")
            await asyncio.sleep(0.25)


class ProcfileSystem:
    """``python deploy/procfile_run.py Procfile`` in the repository, as ``make run`` runs it."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        log_path: Path,
        endpoints: Endpoints | None = None,
        root: Path = ROOT,
        procfile: str = "Procfile",
    ) -> None:
        self.root = root
        self.procfile = root / procfile
        text = self.procfile.read_text()
        self.commands = cpu.procfile_commands(text)
        self.process_env = procfile_env(text)
        self.endpoints = endpoints or Endpoints.free()
        ports = {PORT_ENV[n]: str(p) for n, p in self.endpoints.ports.items()}
        self.env = {**os.environ, **env, **ports}
        self.overrides = {**env, **ports}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.argv = [sys.executable, RUNNER_SCRIPT, procfile]

    @property
    def command(self) -> str:
        """How to start the same system by hand (printed, and kept in the bench's JSON: a URL's
        password is masked)."""
        shown = (k + "=" + _URL_PASSWORD.sub(r"\1***@", v) for k, v in self.overrides.items())
        return " ".join(shown) + " " + " ".join(self.argv)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def launch(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=str(self.root),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self, within: float = 90.0) -> None:
        self.launch()
        urls = {name: self.endpoints.url(name) for name in PORT_ENV if name in self.commands}
        try:
            await wait_ready(
                urls, within, alive=lambda: self.proc is not None and self.proc.poll() is None
            )
        except Exception as exc:
            raise RuntimeError(f"{exc}; runner log tail:\n{self.log_tail()}") from exc

    def components(self, loadgen_pid: int | None = None) -> dict[str, list[int]]:
        return cpu.discover(
            runner_pid=self.proc.pid if self.proc is not None else None,
            services=self.commands,
            loadgen_pid=loadgen_pid,
        )

    async def stop(self, within: float = 40.0) -> dict[str, int | None]:
        """SIGTERM to the runner (it SIGTERMs every process's group, and SIGKILLs what is left
        after its own 30 s); the exit code of each process as the runner printed it."""
        proc = self.proc
        if proc is None:
            return {}
        services = self.components()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, within)
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(proc.wait, 5)
        # The runner starts each process in its own session: kill any left behind, by pid.
        for name in self.commands:
            for pid in services.get(name, []):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        return exit_codes(self.log_tail(400), list(self.commands))

    async def __aenter__(self) -> ProcfileSystem:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class RunningSystem:
    """A system someone else started: services found by the port they listen on, the runner
    as their ancestor whose command line names ``procfile_run.py`` (if any)."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.endpoints = endpoints
        self.command = "(already running)"

    def components(self, loadgen_pid: int | None = None) -> dict[str, list[int]]:
        pids = {
            name: pid
            for name, port in self.endpoints.ports.items()
            if (pid := cpu.listening_pid(port)) is not None
        }
        runner = next((r for p in pids.values() if (r := cpu.find_runner(p)) is not None), None)
        found = cpu.discover(
            runner_pid=runner,
            services={name: [] for name in pids},
            service_pids=pids,
            loadgen_pid=loadgen_pid,
        )
        if runner is None:
            found.pop(cpu.RUNNER, None)
        return found
