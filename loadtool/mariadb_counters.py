"""What MariaDB did during a phase, per order: redo log written and statements run.

CPU per order says how busy the database was; these say what for. The redo figure is where the
outbox's marks showed up: ~5 KB of log per marked row while a row holds ~1 KB
(docs/benchmark.md, "Outbox marks in place").

The counters are the server's (``SHOW GLOBAL STATUS``): they count every database on it, and
the audit's reads, beside the system under test. On a shared server read them as an upper
bound. The bench reads them with its administrator (``BENCH_MYSQL_*``, as the ceiling probe);
a server that does not answer leaves the figures out, never the run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import aiomysql

__all__ = ["COUNTERS", "MariaDbCounters", "per_order"]

# Global status variable -> (the figure it gives per order, the unit it is divided into).
COUNTERS: dict[str, tuple[str, float]] = {
    "Innodb_os_log_written": ("redo_kb_per_order", 1024.0),
    "Questions": ("statements_per_order", 1.0),
}


@dataclass(frozen=True)
class MariaDbCounters:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> MariaDbCounters:
        return cls(
            host=env.get("BENCH_MYSQL_HOST", "127.0.0.1"),
            port=int(env.get("BENCH_MYSQL_PORT", "3306")),
            user=env.get("BENCH_MYSQL_USER", "root"),
            password=env.get("BENCH_MYSQL_PASSWORD", ""),
        )

    async def read(self) -> dict[str, int] | None:
        """The counters now, or None when the server cannot be asked (the caller says so)."""
        try:
            conn = await aiomysql.connect(
                host=self.host, port=self.port, user=self.user, password=self.password
            )
        except (OSError, aiomysql.Error):
            return None
        try:
            async with conn.cursor() as cur:
                names = ", ".join(f"'{name}'" for name in COUNTERS)
                await cur.execute(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({names})")
                values = {str(name): int(value) for name, value in await cur.fetchall()}
        finally:
            conn.close()
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
