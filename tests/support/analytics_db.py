"""A fresh analytics database per test run, so its totals hold that run's orders only and the
audit can demand them exactly (not as a delta over whatever other runs left behind).

Created as root, granted to the service's own user (as deploy/local-infra.sh does for
analytics_db), migrated by the service's own ``migrate`` command, dropped afterwards with its
grants (loadtool/scratch_databases.py, as the bench's databases).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from common.testing import unique_name
from loadtool.mysql_admin import MySqlAdmin
from loadtool.scratch_databases import ScratchDatabase, ScratchDatabases

__all__ = ["ANALYTICS_DB_URL", "fresh_analytics_database"]

HOST = os.environ.get("MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("MYSQL_PORT", "3306"))
ROOT_USER = os.environ.get("MYSQL_ROOT_USER", "root")
ROOT_PASSWORD = os.environ.get("MYSQL_ROOT_PASSWORD", "")
USER = os.environ.get("ANALYTICS_DB_USER", "analytics_svc")
PASSWORD = os.environ.get("ANALYTICS_DB_PASSWORD", "analytics_svc_local")
# ``{port}`` lets a test route the service through a proxy; ``{database}`` is the run's own.
ANALYTICS_DB_URL = f"mysql+aiomysql://{USER}:{PASSWORD}@{HOST}:{{port}}/{{database}}"


@asynccontextmanager
async def fresh_analytics_database() -> AsyncIterator[str]:
    """Yields the new database's name (format ANALYTICS_DB_URL with it and a port)."""
    name = unique_name("analytics_run").replace("-", "_").replace(".", "_")[:64]
    url = ANALYTICS_DB_URL.format(port=PORT, database=name)
    databases = ScratchDatabases(
        (ScratchDatabase("ANALYTICS_DATABASE_URL", url),),
        MySqlAdmin(HOST, PORT, ROOT_USER, ROOT_PASSWORD),
    )
    async with databases.fresh(("analytics_service",)):
        yield name
