"""Databases made for one run and dropped after it, beside the databases of ``make run``: the
benchmark's (``ScratchDatabases.for_bench``) and a fault scenario's analytics partition.

Without them each bench run added its orders to ``make run``'s databases: ~100,000 orders and
facts a run, a 2 GB outbox after a dozen runs. The tables' size then moved the next run's
figures, and ``make test``'s whole-table checks (the analytics rebuild) took minutes instead of
seconds.

The services still connect as their own users (the URLs keep user, password and host; only the
database name changes), granted on a scratch database only while it exists. Creating, granting
and dropping take a MySQL administrator (the bench: the ceiling probe's ``BENCH_MYSQL_*``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import aiomysql
from sqlalchemy.engine import make_url

from loadtool.mysql_admin import MySqlAdmin
from loadtool.system import migrate

__all__ = ["BENCH_DATABASES", "ScratchDatabase", "ScratchDatabases"]

# Setting -> (make run's URL when the setting is unset, the bench's database name).
BENCH_DATABASES: dict[str, tuple[str, str]] = {
    "ORDER_DATABASE_URL": (
        "mysql+aiomysql://order_svc:order_svc_local@127.0.0.1:3306/order_db",
        "order_db_bench",
    ),
    "ANALYTICS_DATABASE_URL": (
        "mysql+aiomysql://analytics_svc:analytics_svc_local@127.0.0.1:3306/analytics_db",
        "analytics_db_bench",
    ),
}


MIGRATE_TIMEOUT_SECONDS = 120.0


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class ScratchDatabase:
    setting: str  # the service's setting that points at it, e.g. ORDER_DATABASE_URL
    url: str  # the service's URL with the scratch database's name

    @property
    def name(self) -> str:
        return make_url(self.url).database or ""

    @property
    def user(self) -> str:
        return make_url(self.url).username or ""


@dataclass(frozen=True)
class ScratchDatabases:
    databases: tuple[ScratchDatabase, ...]
    admin: MySqlAdmin = field(default_factory=MySqlAdmin)

    @classmethod
    def for_bench(
        cls, env: Mapping[str, str] = os.environ, admin: MySqlAdmin | None = None
    ) -> ScratchDatabases:
        """The bench's pair, each service's URL (or its local default) with the bench's name;
        created by ``admin`` (by default the one ``env`` names)."""
        databases = []
        for setting, (default_url, name) in BENCH_DATABASES.items():
            url = make_url(env.get(setting) or default_url)
            if url.database == name:
                raise ValueError(f"{setting} already names the bench's database {name}")
            databases.append(
                ScratchDatabase(
                    setting, url.set(database=name).render_as_string(hide_password=False)
                )
            )
        return cls(tuple(databases), admin or MySqlAdmin.from_env(env))

    def env(self) -> dict[str, str]:
        """The settings that point the services (and their migrations) at these databases."""
        return {d.setting: d.url for d in self.databases}

    async def create(self) -> None:
        """Drops what an interrupted run left, then creates each database empty and grants its
        service's user on it (every host the user is declared for, as deploy/local-infra.sh
        creates them)."""
        async with self.admin.cursor() as cur:
            for d in self.databases:
                await cur.execute(f"DROP DATABASE IF EXISTS {_quoted(d.name)}")
                await cur.execute(
                    f"CREATE DATABASE {_quoted(d.name)} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
                hosts = await self._hosts(cur, d.user)
                if not hosts:
                    raise RuntimeError(
                        f"MySQL has no user {d.user!r} ({d.setting}): run `make infra` first"
                    )
                for host in hosts:
                    await cur.execute(
                        f"GRANT ALL PRIVILEGES ON {_quoted(d.name)}.* TO %s@%s", (d.user, host)
                    )

    @contextlib.asynccontextmanager
    async def fresh(self, services: tuple[str, ...]) -> AsyncIterator[dict[str, str]]:
        """Created empty, migrated by ``services``' own ``migrate`` commands, dropped after:
        yields the settings that point there. A failed drop is left for the next create,
        which drops first (the run's own verdict is what matters)."""
        await self.create()
        try:
            await asyncio.wait_for(migrate(self.env(), services), MIGRATE_TIMEOUT_SECONDS)
            yield self.env()
        finally:
            with contextlib.suppress(Exception):
                await self.drop()

    async def drop(self) -> None:
        async with self.admin.cursor() as cur:
            for d in self.databases:
                await cur.execute(f"DROP DATABASE IF EXISTS {_quoted(d.name)}")
                for host in await self._hosts(cur, d.user):
                    # No grant left behind (REVOKE fails when there is none: nothing to do).
                    with contextlib.suppress(aiomysql.OperationalError):
                        await cur.execute(
                            f"REVOKE ALL PRIVILEGES ON {_quoted(d.name)}.* FROM %s@%s",
                            (d.user, host),
                        )

    async def exists(self) -> dict[str, bool]:
        async with self.admin.cursor() as cur:
            await cur.execute(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name IN %s",
                (tuple(d.name for d in self.databases),),
            )
            found = {row[0] for row in await cur.fetchall()}
        return {d.name: d.name in found for d in self.databases}

    @staticmethod
    async def _hosts(cur: aiomysql.Cursor, user: str) -> list[str]:
        await cur.execute("SELECT Host FROM mysql.user WHERE User = %s ORDER BY Host", (user,))
        return [row[0] for row in await cur.fetchall()]
