"""The `make run` process runner: starts every Procfile line, stops them all together."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[3] / "deploy" / "procfile_run.py"
_SLEEP = (
    "import signal, sys, time; "
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(60)"
)
SLEEPER = f'exec {sys.executable} -c "{_SLEEP}"'


def _start(tmp_path: Path, procfile: str) -> subprocess.Popen[str]:
    path = tmp_path / "Procfile"
    path.write_text(procfile)
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(path)], stdout=subprocess.PIPE, text=True
    )


def _wait_started(runner: subprocess.Popen[str]) -> str:
    assert runner.stdout is not None
    line = runner.stdout.readline()
    assert line.startswith("procfile_run: started"), line
    return line


def test_sigterm_stops_every_process_and_the_runner_exits_0(tmp_path: Path) -> None:
    runner = _start(tmp_path, f"# comment\none: {SLEEPER}\ntwo: {SLEEPER}\n")
    started = _wait_started(runner)
    assert "one (" in started and "two (" in started
    time.sleep(0.5)  # let both children install their SIGTERM handler
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=20) == 0
    assert runner.stdout is not None
    assert "exit codes {'one': 0, 'two': 0}" in runner.stdout.read()


def test_a_process_that_exits_stops_the_others_and_gives_its_code(tmp_path: Path) -> None:
    runner = _start(tmp_path, f"long: {SLEEPER}\nshort: sleep 0.5; exit 3\n")
    _wait_started(runner)
    assert runner.wait(timeout=20) == 3
    assert runner.stdout is not None
    assert "short exited with 3" in runner.stdout.read()
