"""What MariaDB did during a phase, per order: redo log written and statements run.

CPU per order says how busy the database was; these say what for. The redo figure is where the
outbox's marks showed up: ~5 KB of log per marked row while a row holds ~1 KB
(docs/benchmark.md, "Outbox marks in place").

The counters are the server's (``SHOW GLOBAL STATUS``): they count every database on it, and
the audit's reads, beside the system under test. On a shared server read them as an upper
bound. The bench reads them with its administrator (loadtool/mysql_admin.py);
a server that does not answer leaves the figures out, never the run.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiomysql

from loadtool.mysql_admin import MySqlAdmin

__all__ = ["COUNTERS", "per_order", "read_counters"]

# Global status variable -> (the figure it gives per order, the unit it is divided into).
COUNTERS: dict[str, tuple[str, float]] = {
    "Innodb_os_log_written": ("redo_kb_per_order", 1024.0),
    "Questions": ("statements_per_order", 1.0),
}


async def read_counters(admin: MySqlAdmin) -> dict[str, int] | None:
    """The counters now, or None when the server cannot be asked (the caller says so)."""
    try:
        async with admin.cursor() as cur:
            names = ", ".join(f"'{name}'" for name in COUNTERS)
            await cur.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
            values = {str(name): int(value) for name, value in await cur.fetchall()}
    except (OSError, aiomysql.Error):
        return None
    return values if set(values) == set(COUNTERS) else None


def per_order(
    before: Mapping[str, int] | None, after: Mapping[str, int] | None, orders: int
) -> dict[str, float] | None:
    """Each counter's growth over the phase, per order (None when either read failed)."""
    if before is None or after is None or orders <= 0:
        return None
    return {
        figure: round((after[name] - before[name]) / unit / orders, 2)
        for name, (figure, unit) in COUNTERS.items()
    }
