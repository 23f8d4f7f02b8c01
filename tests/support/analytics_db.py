"""A fresh analytics database per test run, so its totals hold that run's orders only and the
audit can demand them exactly (not as a delta over whatever other runs left behind).

Created as root, granted to the service's own user (as deploy/local-infra.sh does for
analytics_db), migrated by the service's own ``migrate`` command, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomysql

from common.testing import unique_name

__all__ = ["ANALYTICS_DB_URL", "fresh_analytics_database"]

HOST = os.environ.get("MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("MYSQL_PORT", "3306"))
ROOT_USER = os.environ.get("MYSQL_ROOT_USER", "root")
ROOT_PASSWORD = os.environ.get("MYSQL_ROOT_PASSWORD", "")
USER = os.environ.get("ANALYTICS_DB_USER", "analytics_svc")
PASSWORD = os.environ.get("ANALYTICS_DB_PASSWORD", "analytics_svc_local")
# ``{port}`` lets a test route the service through a proxy; ``{database}`` is the run's own.
ANALYTICS_DB_URL = f"mysql+aiomysql://{USER}:{PASSWORD}@{HOST}:{{port}}/{{database}}"


async def _root(*statements: str) -> None:
    conn = await aiomysql.connect(
        host=HOST, port=PORT, user=ROOT_USER, password=ROOT_PASSWORD, autocommit=True
    )
    try:
        async with conn.cursor() as cur:
            for statement in statements:
                await cur.execute(statement)
    finally:
        conn.close()


async def _migrate(url: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "analytics_service",
        "migrate",
        env={**os.environ, "ANALYTICS_DATABASE_URL": url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        raise RuntimeError(f"analytics migrate failed: {out.decode(errors='replace')[-2000:]}")


@asynccontextmanager
async def fresh_analytics_database() -> AsyncIterator[str]:
    """Yields the new database's name (format ANALYTICS_DB_URL with it and a port)."""
    name = unique_name("analytics_run").replace("-", "_").replace(".", "_")[:64]
    grants = [
        f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{USER}'@'{host}'" for host in ("%", "localhost")
    ]
    await _root(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", *grants)
    try:
        await _migrate(ANALYTICS_DB_URL.format(port=PORT, database=name))
        yield name
    finally:
        # DROP DATABASE keeps the grants: revoke them, so the user is left with its own only.
        for host in ("%", "localhost"):
            with contextlib.suppress(Exception):
                await _root(f"REVOKE ALL PRIVILEGES ON `{name}`.* FROM '{USER}'@'{host}'")
        with contextlib.suppress(Exception):
            await _root(f"DROP DATABASE IF EXISTS `{name}`")
