"""The bench's MySQL administrator (``BENCH_MYSQL_HOST/PORT/USER/PASSWORD``, default ``root``
with an empty password on 127.0.0.1:3306): the ceiling probe, the scratch databases and the
server's counters all connect as it."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiomysql

__all__ = ["MySqlAdmin"]


@dataclass(frozen=True)
class MySqlAdmin:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> MySqlAdmin:
        return cls(
            host=env.get("BENCH_MYSQL_HOST", "127.0.0.1"),
            port=int(env.get("BENCH_MYSQL_PORT", "3306")),
            user=env.get("BENCH_MYSQL_USER", "root"),
            password=env.get("BENCH_MYSQL_PASSWORD", ""),
        )

    async def connect(self, **options: Any) -> aiomysql.Connection:
        return await aiomysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, **options
        )

    @contextlib.asynccontextmanager
    async def cursor(self) -> AsyncIterator[aiomysql.Cursor]:
        """A cursor on an autocommit connection of its own, closed after."""
        conn = await self.connect(autocommit=True)
        try:
            # DROP ... IF EXISTS of nothing is a note, not news.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", aiomysql.Warning)
                async with conn.cursor() as cur:
                    yield cur
        finally:
            conn.close()
