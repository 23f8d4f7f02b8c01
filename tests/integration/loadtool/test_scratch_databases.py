"""The bench's own databases: made empty for the service's user, dropped with its grant after."""

from __future__ import annotations

import aiomysql
import pytest

from common.testing import unique_name
from loadtool.scratch_databases import ScratchDatabase, ScratchDatabases

pytestmark = pytest.mark.integration

USER, PASSWORD = "order_svc", "order_svc_local"


def _databases() -> ScratchDatabases:
    name = unique_name("bench_db").replace("-", "_")
    url = f"mysql+aiomysql://{USER}:{PASSWORD}@127.0.0.1:3306/{name}"
    return ScratchDatabases((ScratchDatabase("ORDER_DATABASE_URL", url),))


async def _as_service(db: str, *sql: str) -> list[tuple[object, ...]]:
    conn = await aiomysql.connect(
        host="127.0.0.1", port=3306, user=USER, password=PASSWORD, db=db, autocommit=True
    )
    try:
        async with conn.cursor() as cur:
            for statement in sql:
                await cur.execute(statement)
            return list(await cur.fetchall())
    finally:
        conn.close()


async def _grants(databases: ScratchDatabases) -> list[str]:
    async with databases.admin.cursor() as cur:
        await cur.execute("SHOW GRANTS FOR %s@%s", (USER, "localhost"))
        return [row[0] for row in await cur.fetchall()]


async def test_the_bench_database_is_made_empty_for_the_services_user_and_dropped_after() -> None:
    databases = _databases()
    [db] = databases.databases
    try:
        await databases.create()
        assert await databases.exists() == {db.name: True}
        await _as_service(
            db.name, "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)"
        )

        # A run that was interrupted left its table: the next one starts empty all the same.
        await databases.create()
        assert await _as_service(db.name, "SHOW TABLES") == []
    finally:
        await databases.drop()
    assert await databases.exists() == {db.name: False}
    assert not [g for g in await _grants(databases) if db.name in g]
    with pytest.raises(aiomysql.OperationalError):
        await _as_service(db.name, "SELECT 1")


async def test_a_user_that_does_not_exist_is_named_in_the_error() -> None:
    name = unique_name("bench_db").replace("-", "_")
    databases = ScratchDatabases(
        (ScratchDatabase("ORDER_DATABASE_URL", f"mysql+aiomysql://nobody_x@x/{name}"),)
    )
    try:
        with pytest.raises(RuntimeError, match=r"nobody_x.*make infra"):
            await databases.create()
    finally:
        await databases.drop()
