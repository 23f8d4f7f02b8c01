"""CPU time per component from ``/proc/<pid>/stat`` (utime + stime, in clock ticks).

The benchmark reads every component's ticks before and after a phase and divides the difference
by the orders of the phase: CPU ms per order for each service process, the process runner
(``deploy/procfile_run.py``), MariaDB, RabbitMQ, Redis and the load generator itself.

Processes are found, never configured: the services are descendants of the runner whose command
line ends with their Procfile command (``-m order_service`` ...; the Procfile ``exec``s, so each
child of the runner is the service itself), the runner is the runner's own process plus any
descendant that is not a service (normally none: it copies no output), and the infrastructure
is found by process name (``mariadbd``, ``beam.smp``, ``redis-server``). A component is a
process tree, so a service that forks workers (``ORDER_WORKERS=2``) is counted whole.
Everything here is pure file reading, so the unit tests run it against a fake ``/proc``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CLK_TCK",
    "INFRA_PROCESSES",
    "LOADGEN",
    "RUNNER",
    "RUNNER_MARKER",
    "TOTAL",
    "CpuSnapshot",
    "ProcStat",
    "children_of",
    "cpu_delta",
    "descendants",
    "discover",
    "find_by_name",
    "find_runner",
    "listening_pid",
    "machine_ticks",
    "procfile_commands",
    "read_cmdline",
    "read_stat",
    "snapshot",
]

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PROC = "/proc"
RUNNER = "runner (procfile_run)"
RUNNER_MARKER = "procfile_run.py"
LOADGEN = "load generator"
TOTAL = "total"
# Component name -> process names (``/proc/<pid>/comm``; the kernel cuts it at 15 bytes).
INFRA_PROCESSES: dict[str, tuple[str, ...]] = {
    "mariadb": ("mariadbd", "mysqld"),
    "rabbitmq": ("beam.smp",),
    "redis": ("redis-server",),
}


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    comm: str
    ticks: int  # utime + stime


def read_stat(pid: int, proc: str = PROC) -> ProcStat | None:
    """None when the process is gone (or unreadable)."""
    try:
        text = Path(proc, str(pid), "stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: it runs from the first "(" to the last ")".
    open_, close = text.find("("), text.rfind(")")
    if open_ < 0 or close < 0:
        return None
    rest = text[close + 2 :].split()
    try:
        # Fields after comm: state(3) ppid(4) ... utime(14) stime(15), 1-based as in proc(5).
        return ProcStat(pid, int(rest[1]), text[open_ + 1 : close], int(rest[11]) + int(rest[12]))
    except (IndexError, ValueError):
        return None


def read_cmdline(pid: int, proc: str = PROC) -> list[str]:
    try:
        raw = Path(proc, str(pid), "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _pids(proc: str) -> list[int]:
    try:
        return [int(name) for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return []


def _stats(proc: str) -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for pid in _pids(proc):
        stat = read_stat(pid, proc)
        if stat is not None:
            stats[pid] = stat
    return stats


def children_of(stats: Mapping[int, ProcStat]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    return children


def descendants(root: int, children: Mapping[int, Sequence[int]]) -> list[int]:
    """Every process below ``root`` (not ``root`` itself), parents before children."""
    found: list[int] = []
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def find_by_name(names: Iterable[str], stats: Mapping[int, ProcStat]) -> list[int]:
    wanted = {n[:15] for n in names}
    return sorted(pid for pid, s in stats.items() if s.comm in wanted)


def procfile_commands(text: str) -> dict[str, list[str]]:
    """Procfile process name -> the argv it ends up running (env assignments and ``exec``
    dropped): ``order: X=1 exec .venv/bin/python -m order_service`` -> ``[..., -m, order_service]``.
    """
    commands: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        name, _, command = line.partition(":")
        try:
            argv = shlex.split(command)
        except ValueError:
            continue
        while argv and (("=" in argv[0] and not argv[0].startswith("-")) or argv[0] == "exec"):
            argv = argv[1:]
        if argv:
            commands[name.strip()] = argv
    return commands


def _matches(cmdline: Sequence[str], argv: Sequence[str]) -> bool:
    """The process runs ``argv``: same arguments after the program (the program path may be
    resolved differently: ``.venv/bin/python`` vs ``/abs/.venv/bin/python3``)."""
    if not cmdline or not argv:
        return False
    if len(argv) == 1:
        return os.path.basename(cmdline[0]) == os.path.basename(argv[0])
    return list(cmdline[-(len(argv) - 1) :]) == list(argv[1:]) and len(cmdline) >= len(argv)


def discover(
    *,
    runner_pid: int | None,
    services: Mapping[str, Sequence[str]],
    loadgen_pid: int | None = None,
    infra: Mapping[str, Sequence[str]] = INFRA_PROCESSES,
    service_pids: Mapping[str, int] | None = None,
    proc: str = PROC,
) -> dict[str, list[int]]:
    """Component name -> pids (each service with its own descendants).

    ``services`` maps a service name to the argv it runs (``procfile_commands``); they are looked
    for below ``runner_pid``, or anywhere when there is no runner (``--use-running``: the
    system was started by someone else). ``service_pids`` pins pids known otherwise.
    """
    stats = _stats(proc)
    children = children_of(stats)
    below = set(descendants(runner_pid, children)) if runner_pid is not None else set(stats)
    found: dict[str, list[int]] = {}
    claimed: set[int] = set()
    for name, argv in services.items():
        roots = [
            pid for pid in sorted(below) if pid in stats and _matches(read_cmdline(pid, proc), argv)
        ]
        pinned = (service_pids or {}).get(name)
        if pinned is not None and pinned in stats and pinned not in roots:
            roots.append(pinned)
        # A forked worker runs the same command line as its parent: keep the topmost ones.
        tree: set[int] = set()
        for root in roots:
            if root not in tree:
                tree.add(root)
                tree.update(descendants(root, children))
        found[name] = sorted(tree)
        claimed |= tree
    if runner_pid is not None and runner_pid in stats:
        found[RUNNER] = sorted({runner_pid} | (below - claimed))
    for name, names in infra.items():
        found[name] = find_by_name(names, stats)
    if loadgen_pid is not None:
        found[LOADGEN] = [loadgen_pid]
    return found


def _listening_inodes(port: int, proc: str) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(proc, "net", table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            # sl local_address rem_address st ... inode (field 10); LISTEN is state 0A.
            if len(parts) > 9 and parts[3] == "0A" and parts[1].rsplit(":", 1)[-1] == f"{port:04X}":
                inodes.add(parts[9])
    return inodes


def listening_pid(port: int, proc: str = PROC) -> int | None:
    """The process listening on TCP ``port`` (the lowest pid when a socket is shared by forked
    workers: the parent); None when nobody listens or the fds cannot be read."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid in sorted(_pids(proc)):
        fd_dir = Path(proc, str(pid), "fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) in wanted:
                    return pid
            except OSError:
                continue
    return None


def find_runner(pid: int, marker: str = RUNNER_MARKER, proc: str = PROC) -> int | None:
    """The topmost ancestor of ``pid`` whose command line mentions ``marker`` (the process
    runner that started an already running system), or None."""
    found: int | None = None
    seen: set[int] = set()
    stat = read_stat(pid, proc)
    while stat is not None and stat.ppid > 1 and stat.ppid not in seen:
        seen.add(stat.ppid)
        if any(marker in part for part in read_cmdline(stat.ppid, proc)):
            found = stat.ppid
        stat = read_stat(stat.ppid, proc)
    return found


def machine_ticks(proc: str = PROC) -> tuple[int, int]:
    """(busy, total) ticks of all CPUs since boot, from the first line of ``/proc/stat``."""
    try:
        first = Path(proc, "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0, 0
    values = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(values)
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return total - idle, total


@dataclass
class CpuSnapshot:
    """Ticks per pid of every component, and the machine's busy/total ticks."""

    components: dict[str, list[int]]
    ticks: dict[int, int]
    machine_busy: int
    machine_total: int
    at: float = 0.0
    pids: dict[str, list[int]] = field(default_factory=dict)


def snapshot(components: Mapping[str, Sequence[int]], at: float, proc: str = PROC) -> CpuSnapshot:
    ticks: dict[int, int] = {}
    for pids in components.values():
        for pid in pids:
            stat = read_stat(pid, proc)
            if stat is not None:
                ticks[pid] = stat.ticks
    busy, total = machine_ticks(proc)
    return CpuSnapshot({k: list(v) for k, v in components.items()}, ticks, busy, total, at)


def cpu_delta(
    before: CpuSnapshot, after: CpuSnapshot, orders: int, *, clk_tck: int = CLK_TCK
) -> dict[str, dict[str, float | int | list[int]]]:
    """Per component: CPU seconds, cores busy on average, CPU ms per order; plus the total of
    the components and the machine as a whole (``other`` = machine - total: what else ran).

    A pid seen only in ``after`` (a process started during the phase) counts from zero; a pid
    gone by ``after`` counts up to its last reading (its final ticks are lost, so a component
    that restarts mid-phase reads low, never high).
    """
    wall = max(after.at - before.at, 1e-9)
    out: dict[str, dict[str, float | int | list[int]]] = {}
    total_ticks = 0
    for name in list(before.components) + [
        n for n in after.components if n not in before.components
    ]:
        pids = sorted(set(before.components.get(name, ())) | set(after.components.get(name, ())))
        ticks = 0
        for pid in pids:
            if pid in after.ticks:
                ticks += max(0, after.ticks[pid] - before.ticks.get(pid, 0))
        total_ticks += ticks
        out[name] = _row(ticks, wall, orders, clk_tck, pids)
    out[TOTAL] = _row(total_ticks, wall, orders, clk_tck, [])
    machine = max(0, after.machine_busy - before.machine_busy)
    out["machine (all processes)"] = _row(machine, wall, orders, clk_tck, [])
    out["other processes"] = _row(max(0, machine - total_ticks), wall, orders, clk_tck, [])
    return out


def _row(
    ticks: int, wall: float, orders: int, clk_tck: int, pids: list[int]
) -> dict[str, float | int | list[int]]:
    seconds = ticks / clk_tck
    row: dict[str, float | int | list[int]] = {
        "cpu_s": round(seconds, 3),
        "cores": round(seconds / wall, 3),
        "ms_per_order": round(seconds * 1000 / orders, 3) if orders else 0.0,
    }
    if pids:
        row["pids"] = pids
    return row
