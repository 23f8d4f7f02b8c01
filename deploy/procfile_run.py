"""Run every process of a Procfile in the foreground, as `make run` does.

Each process writes straight to this terminal (its JSON lines name their service), so the
runner copies no output and costs no CPU per log line (honcho re-printed every line, which was
a visible share of the whole system's CPU). Ctrl-C or SIGTERM stops all of them with SIGTERM
(each drains and exits 0); if one process exits on its own, the others are stopped too and the
runner exits with that process's code.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

STOP_GRACE_SECONDS = 30.0
_LINE = re.compile(r"^([A-Za-z0-9_.-]+):\s*(.+)$")


def parse_procfile(text: str) -> dict[str, str]:
    processes: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise SystemExit(f"Procfile: cannot read line {raw!r}")
        processes[match.group(1)] = match.group(2)
    return processes


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "Procfile")
    processes = parse_procfile(path.read_text())
    children = {
        name: subprocess.Popen(["/bin/sh", "-c", command], start_new_session=True)
        for name, command in processes.items()
    }
    print(f"procfile_run: started {', '.join(f'{n} ({p.pid})' for n, p in children.items())}")
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    first_exit: tuple[str, int] | None = None
    while not stopping:
        for name, child in children.items():
            code = child.poll()
            if code is not None:
                first_exit = (name, code)
                print(f"procfile_run: {name} exited with {code}; stopping the others")
                stopping = True
                break
        else:
            time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    codes: dict[str, int] = {}
    for name, child in children.items():
        try:
            codes[name] = child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            codes[name] = child.wait()
    print(f"procfile_run: exit codes {codes}")
    if first_exit is not None:
        return first_exit[1] or 1
    return max((abs(c) for c in codes.values()), default=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
